# -*- coding: utf-8 -*-
# Copyright: virtops.qemu contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""dnsmasq for the embedded driver's networks: its files, its process, its leases.

Each active network with an address runs one dnsmasq the way libvirt's
bridge driver does: a configuration of its own (``lib/dnsmasq/NAME.conf``,
passed with ``--conf-file`` so that ``/etc/dnsmasq.conf`` is never read),
static DHCP hosts in ``NAME.hostsfile`` and DNS hosts in ``NAME.addnhosts``
(both re-read on SIGHUP, so a host added to a running network keeps the
same dnsmasq), and leases in ``NAME.leases``.  dnsmasq keeps the user and
group of the caller: the embed tree is private to that user, and dnsmasq
must read the hostsfile again on SIGHUP after it has dropped privileges.
A pid is trusted as a network's dnsmasq only while its start time is the
recorded one and its command line names the network's configuration.
Private to the collection.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from typing import NamedTuple

from ansible_collections.virtops.qemu.plugins.module_utils.driver.base import Lease
from ansible_collections.virtops.qemu.plugins.module_utils.driver.embed import process
from ansible_collections.virtops.qemu.plugins.module_utils.errors import BackendError, InvalidInput
from ansible_collections.virtops.qemu.plugins.module_utils.model.network import ip_family, ip_interface

START_TIMEOUT = 10.0
STOP_GRACE = 5.0
# libvirt's lease time units -> dnsmasq's suffixes.
_UNIT_SUFFIX = {"seconds": "", "minutes": "m", "hours": "h"}
_SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Files(NamedTuple):
    """Where one network's dnsmasq keeps its configuration, hosts, leases and pid."""
    conf: str
    hostsfile: str
    addnhosts: str
    leases: str
    pidfile: str


# -- rendering ------------------------------------------------------------------
def lease_time(host_or_range) -> str | None:
    """dnsmasq's lease time of a <range> or <host> with a <lease> child; None without one."""
    lease = host_or_range.find("lease")
    if lease is None:
        return None
    expiry = int(lease.get("expiry", "0"))
    if expiry == 0:
        return "infinite"
    return f"{expiry}{_UNIT_SUFFIX.get(lease.get('unit', 'minutes'), 'm')}"


def render_conf(network, bridge: str, files: Files) -> str:
    """The dnsmasq configuration of an active network, in libvirt's order of options."""
    lines = ["strict-order", f"user={_user()}", f"group={_group()}", f"pid-file={files.pidfile}",
             "except-interface=lo", "bind-dynamic", f"interface={bridge}"]
    lines += _dns_lines(network)
    lines += _dhcp_lines(network, files)
    return _file_of(lines, "configuration")


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _group() -> str:
    return grp.getgrgid(os.getegid()).gr_name


def _dns_lines(network) -> list[str]:
    lines: list[str] = []
    dns = network.find("dns")
    if dns is not None and dns.get("enable") == "no":
        return ["port=0"]
    domain = network.find("domain")
    if domain is not None and domain.get("name"):
        if domain.get("localOnly") == "yes":
            lines.append(f"local=/{domain.get('name')}/")
        lines += [f"domain={domain.get('name')}", "expand-hosts"]
    if dns is None:
        return lines
    if dns.get("forwardPlainNames") == "no":
        lines += ["domain-needed", "local=//"]
    for forwarder in dns.findall("forwarder"):
        lines.append(_server_line(forwarder))
    if any(f.get("addr") and not f.get("domain") for f in dns.findall("forwarder")):
        lines.append("no-resolv")
    for srv in dns.findall("srv"):
        lines.append(_srv_line(srv))
    for txt in dns.findall("txt"):
        lines.append(f"txt-record={txt.get('name')},{txt.get('value', '')}")
    return lines


def _server_line(forwarder) -> str:
    domain, addr = forwarder.get("domain"), forwarder.get("addr")
    if domain:
        return f"server=/{domain}/{addr or '#'}"
    return f"server={addr}"


def _srv_line(srv) -> str:
    name = f"_{srv.get('service')}._{srv.get('protocol')}"
    if srv.get("domain"):
        name += f".{srv.get('domain')}"
    fields = [name]
    if srv.get("target"):
        fields += [srv.get("target"), srv.get("port", "0"), srv.get("priority", "0"), srv.get("weight", "0")]
    return "srv-host=" + ",".join(fields)


def _dhcp_lines(network, files: Files) -> list[str]:
    lines: list[str] = []
    total = 0
    has_ipv6 = False
    for ip in network.findall("ip"):
        family = ip_family(ip)
        has_ipv6 = has_ipv6 or family == "ipv6"
        ranges = ip.findall("dhcp/range")
        for dhcp_range in ranges:
            lines.append(_range_line(ip, dhcp_range))
            total += _range_size(dhcp_range)
        if family == "ipv6" and not ranges:
            lines.append(f"dhcp-range={ip.get('address')},ra-only")
    if total:
        lines += ["dhcp-no-override", "dhcp-authoritative", f"dhcp-lease-max={total}",
                  f"dhcp-hostsfile={files.hostsfile}", f"dhcp-leasefile={files.leases}"]
    lines.append(f"addn-hosts={files.addnhosts}")
    if has_ipv6:
        lines.append("enable-ra")
    return lines


def _range_line(ip, dhcp_range) -> str:
    interface = ip_interface(ip)
    mask = str(interface.netmask) if interface.version == 4 else str(interface.network.prefixlen)
    fields = [dhcp_range.get("start"), dhcp_range.get("end"), mask]
    lease = lease_time(dhcp_range)
    if lease:
        fields.append(lease)
    return "dhcp-range=" + ",".join(fields)


def _range_size(dhcp_range) -> int:
    start = ipaddress.ip_address(dhcp_range.get("start"))
    end = ipaddress.ip_address(dhcp_range.get("end"))
    return int(end) - int(start) + 1


def render_hostsfile(network) -> str:
    """One dhcp-hostsfile line per static host: ``mac|id:ID|name,ip,name,lease``."""
    lines = []
    for ip in network.findall("ip"):
        ipv6 = ip_family(ip) == "ipv6"
        for host in ip.findall("dhcp/host"):
            lines.append(",".join(_host_fields(host, ipv6)))
    return _file_of(lines, "hostsfile")


def _host_fields(host, ipv6: bool) -> list[str]:
    fields = []
    if host.get("mac"):
        fields.append(host.get("mac").lower())
    elif host.get("id"):
        fields.append(f"id:{host.get('id')}")
    if host.get("ip"):
        fields.append(f"[{host.get('ip')}]" if ipv6 else host.get("ip"))
    if host.get("name"):
        fields.append(host.get("name"))
    lease = lease_time(host)
    if lease:
        fields.append(lease)
    return fields


def render_addnhosts(network) -> str:
    """One hosts-file line per <dns><host ip=...>: the address and its hostnames."""
    lines = []
    for host in network.findall("dns/host"):
        names = [(n.text or "").strip() for n in host.findall("hostname") if (n.text or "").strip()]
        if names:
            lines.append("\t".join([host.get("ip") or "", *names]))
    return _file_of(lines, "addn-hosts file", separator="\t")


def _file_of(lines: list[str], what: str, separator: str = "") -> str:
    """One option or entry a line; a control character would start another line of dnsmasq's, run as root."""
    for line in lines:
        if _CONTROL.search(line.replace(separator, "") if separator else line):
            raise InvalidInput(f"refusing to write {line!r} into dnsmasq's {what}: a value of the network "
                               "holds a control character (a line break, a tab, ...)", "xml")
    return "".join(f"{line}\n" for line in lines)


# -- leases -------------------------------------------------------------------------
def parse_leases(text: str, prefix_of: Callable[[str], int | None], now: float | None = None) -> list[Lease]:
    """The unexpired leases of a dnsmasq lease file.

    IPv4 lines are ``expiry mac ip hostname clientid``; after the ``duid``
    line, IPv6 lines are ``expiry iaid ip hostname clientid`` where the
    client id is the client's DUID (its MAC is read from link-layer DUIDs).
    """
    now = time.time() if now is None else now
    leases = []
    ipv6 = False
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "duid":
            ipv6 = True
            continue
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        expiry = int(fields[0])
        if expiry and expiry < now:
            continue
        clientid = fields[4] if len(fields) > 4 and fields[4] != "*" else None
        mac = _mac_of_duid(clientid) if ipv6 else fields[1].lower()
        leases.append(Lease(mac=mac, ip=fields[2], prefix=prefix_of(fields[2]),
                            hostname=None if fields[3] == "*" else fields[3], expiry=expiry,
                            family="ipv6" if ipv6 else "ipv4", clientid=clientid))
    return leases


def _mac_of_duid(duid: str | None) -> str:
    """The MAC in a DUID-LLT (type 1) or DUID-LL (type 3) of Ethernet (hardware type 1); "" otherwise."""
    octets = (duid or "").lower().split(":")
    if octets[:4] == ["00", "01", "00", "01"] and len(octets) == 14:
        return ":".join(octets[8:])
    if octets[:4] == ["00", "03", "00", "01"] and len(octets) == 10:
        return ":".join(octets[4:])
    return ""


# -- the process ---------------------------------------------------------------------
def binary() -> str:
    found = shutil.which("dnsmasq") or shutil.which("dnsmasq", path=os.pathsep.join(_SEARCH_PATH))
    if not found:
        raise BackendError("dnsmasq is needed for networks with addresses on the embedded driver; "
                           "install it (Debian: apt install dnsmasq-base)")
    return found


def conf_argument(conf: str) -> str:
    return f"--conf-file={conf}"


def runs(pid: int | None, starttime: int | None, conf: str) -> bool:
    """``pid`` is still the dnsmasq started with ``conf``."""
    return process.is_alive(pid, starttime) and conf_argument(conf) in process.command_line(pid or 0)


def find(files: Files) -> tuple[int, int] | None:
    """The dnsmasq named by the pidfile, when it runs with this configuration: (pid, starttime)."""
    pid = process.read_pid(files.pidfile)
    if pid and runs(pid, None, files.conf):
        starttime = process.start_time(pid)
        if starttime is not None:
            return pid, starttime
    return None


def find_running(files: Files, netns: int | None) -> tuple[int, int] | None:
    """A dnsmasq of network namespace ``netns`` started with this configuration, pidfile or not."""
    candidates = [found[0] for found in [find(files)] if found]
    candidates += [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    for pid in candidates:
        if conf_argument(files.conf) in process.command_line(pid) and _netns_of(pid) == netns:
            starttime = process.start_time(pid)
            if starttime is not None:
                return pid, starttime
    return None


def _netns_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def start(files: Files) -> tuple[int, int]:
    """Run dnsmasq (it daemonizes itself once it has bound its sockets); returns (pid, starttime)."""
    argv = [binary(), conf_argument(files.conf)]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=START_TIMEOUT, cwd="/", check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"cannot run {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise BackendError(f"dnsmasq failed to start ({done.returncode}): {done.stderr.strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = find(files)
        if found:
            return found
        time.sleep(0.02)
    raise BackendError(f"dnsmasq started with {files.conf} but no running dnsmasq is named by {files.pidfile}")


def reload(pid: int, starttime: int) -> None:
    """SIGHUP: dnsmasq reads its hostsfile and addn-hosts again, keeping its pid and leases."""
    process.signal_process(pid, starttime, signal.SIGHUP)


def stop(pid: int, starttime: int | None) -> None:
    """SIGTERM, SIGKILL after a grace period; the pidfile is the caller's."""
    process.signal_process(pid, starttime, signal.SIGTERM)
    if process.wait_gone(pid, starttime, STOP_GRACE):
        return
    process.signal_process(pid, starttime, signal.SIGKILL)
    if not process.wait_gone(pid, starttime, STOP_GRACE):
        raise BackendError(f"dnsmasq process {pid} survived SIGKILL")
