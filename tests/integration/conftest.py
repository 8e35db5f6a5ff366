"""Fixtures shared by the integration tests' modules: libvirt's, one daemon pair and one domain per session."""

from tests.libvirt_fixtures import libvirt_daemons, libvirt_domain, libvirt_loop  # noqa: F401
