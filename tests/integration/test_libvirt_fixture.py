"""What the libvirt fixtures cost, and that a domain start does not make libvirt probe QEMU again."""

from __future__ import annotations

from tests.libvirt_fixtures import Daemons, Domain, caps_cache, create_domain, destroy_domain, why_probed


def test_a_domain_start_reuses_the_capability_cache(libvirt_daemons: Daemons, libvirt_domain: Domain):
    before = caps_cache()
    domain = create_domain(libvirt_daemons.uri, "qmpsh-test-cost-")
    destroy_domain(domain)
    print(f"\nlibvirt fixtures: daemons started {libvirt_daemons.started or 'none'} in {libvirt_daemons.seconds:.2f} s"
          f"{' (/dev/kvm masked)' if libvirt_daemons.kvm_masked else ''}; session domain created in "
          f"{libvirt_domain.seconds:.2f} s; another in {domain.seconds:.2f} s")
    # A re-probe rewrites the cache: ~14 probes and half a minute for one start, where it happens.
    assert caps_cache() == before, f"libvirt probed QEMU again: {why_probed(libvirt_daemons)[-3:]}"
    assert before, "libvirtd has probed QEMU at least once"
    assert domain.seconds < 10
