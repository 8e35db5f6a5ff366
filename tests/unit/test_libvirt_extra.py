"""Without libvirt-python, the libvirt transport says what to install."""

import subprocess
import sys

from tests.conftest import REPO


def test_importing_the_transport_without_libvirt_python_names_the_extra():
    code = "import sys; sys.modules['libvirt'] = None; import qmpsh.libvirt_transport"  # as if not installed
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "ImportError: libvirt domains need libvirt-python: pip install 'qmpsh[libvirt]'")


def test_importing_qmpsh_does_not_import_libvirt():
    code = "import sys, qmpsh.cli, qmpsh.session; print(sorted(m for m in sys.modules if 'libvirt' in m))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
