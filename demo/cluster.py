"""A distributed SeaweedFS on 127.0.0.1: 1 master, 3 volume servers, a filer and the S3 gateway, each its own
`weed` process, for tests that lose a storage node.

The master's default replication is `001`: every volume has one extra copy on another server of the same rack
(all volume servers are in data center `dc1`, rack `rack1`), so losing one volume server loses no data. Writes
to a volume whose replica is down fail until the master notices the loss and grows new volumes on the servers
left. Same interface as demo.seaweed.SeaweedFS (identities, `endpoint`, `client`, `create_locked_bucket`)::

    with SeaweedCluster(workdir, secrets_dir=workdir / "secrets") as sw:
        sw.create_locked_bucket("backupd-tos", days=1)
        sw.kill_volume_server(1)   # SIGKILL, as a lost node
"""
from __future__ import annotations

import signal
from pathlib import Path

from demo._util import GaveUp, free_ports, log_tail, spawn, terminate, wait_until
from demo.seaweed import START_TIMEOUT, SeaweedFS, weed_binary

VOLUME_SERVERS = 3
REPLICATION = "001"
DATA_CENTER, RACK = "dc1", "rack1"
#: Small volumes, so a run spreads its packs over several volumes (and so over every server pair).
VOLUME_SIZE_MB = 64


class SeaweedCluster(SeaweedFS):
    """Master, VOLUME_SERVERS volume servers, filer and S3 gateway; every listener on a free 127.0.0.1 port."""

    def __init__(self, workdir: Path, secrets_dir: Path | None = None,
                 buckets: list[str] | tuple[str, ...] = ("backupd-tos",),
                 extra_identities: dict[str, list[str]] | None = None, volume_servers: int = VOLUME_SERVERS):
        super().__init__(workdir, secrets_dir, buckets, extra_identities)
        self.volume_servers = volume_servers
        self.procs: dict[str, object] = {}
        self.killed: list[int] = []

    def _names(self) -> list[str]:
        return ["master", *[f"volume{i}" for i in range(self.volume_servers)], "filer", "s3"]

    def _launch(self) -> None:
        names = self._names()
        ports = free_ports(2 * len(names))
        self.ports = {}
        for i, name in enumerate(names):
            self.ports[name], self.ports[f"{name}_grpc"] = ports[2 * i], ports[2 * i + 1]
        self._log_offsets = {n: self._log(n).stat().st_size if self._log(n).exists() else 0 for n in names}
        for name in names:
            self.procs[name] = spawn(self._argv_of(name), self._log(name), cwd=self.workdir)
            # the filer needs the master, the gateway the filer: start each once the one before answers
            if not wait_until(lambda: self._up(name), START_TIMEOUT, interval=0.25):
                raise RuntimeError(f"SeaweedFS {name} did not start in {START_TIMEOUT:.0f}s; log tail:\n"
                                   f"{log_tail(self._log(name))}")
        self.proc = self.procs["s3"]
        if not wait_until(self._ready, START_TIMEOUT, interval=0.25):
            raise RuntimeError(f"SeaweedFS S3 did not become ready in {START_TIMEOUT:.0f}s; log tail:\n"
                               f"{log_tail(self._log('s3'))}")

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _addr(self, name: str) -> str:
        """weed's `host:port.grpcPort` form (the gRPC port is not the default port+10000)."""
        return f"127.0.0.1:{self.ports[name]}.{self.ports[name + '_grpc']}"

    def _argv_of(self, name: str) -> list[str]:
        d, p = self.workdir, self.ports
        common = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={p[name]}", f"-port.grpc={p[name + '_grpc']}"]
        if name == "master":
            (d / "master").mkdir(exist_ok=True)
            return [weed_binary(), "master", *common, f"-mdir={d / 'master'}", f"-defaultReplication={REPLICATION}",
                    f"-volumeSizeLimitMB={VOLUME_SIZE_MB}", "-telemetry=false", "-peers=none"]
        if name.startswith("volume"):
            (d / name).mkdir(exist_ok=True)
            return [weed_binary(), "volume", *common, f"-dir={d / name}", f"-master={self._addr('master')}",
                    f"-dataCenter={DATA_CENTER}", f"-rack={RACK}", "-max=30", "-preStopSeconds=0",
                    "-minFreeSpace=1GiB"]
        sock = self._socket_dir()
        if name == "filer":
            (d / "filer").mkdir(exist_ok=True)
            return [weed_binary(), "filer", *common, f"-master={self._addr('master')}",
                    f"-defaultStoreDir={d / 'filer'}", f"-dataCenter={DATA_CENTER}", f"-rack={RACK}",
                    *([f"-localSocket={sock / 'filer.sock'}"] if sock else [])]
        return [weed_binary(), "s3", *common, f"-filer={self._addr('filer')}", f"-config={d / 's3-identities.json'}",
                "-port.iceberg=0", "-port.lance=0", "-autoCreateBucket=false",
                *([f"-localSocket={sock / 's3.sock'}"] if sock else [])]

    def _socket_dir(self) -> Path | None:
        """Unix sockets in workdir when the path fits sun_path (108 bytes); else weed's /tmp default."""
        sock = self.workdir / "sock"
        if len(str(sock)) > 80:
            return None
        sock.mkdir(exist_ok=True)
        return sock

    def _up(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise GaveUp(f"weed {name} exited with {proc.returncode}; log tail:\n{log_tail(self._log(name))}")
        if self._clash(name):
            raise GaveUp(f"weed {name} could not bind its ports; log tail:\n{log_tail(self._log(name))}")
        if name.startswith("volume"):
            return self._registered(int(name[len("volume"):]))
        import socket

        with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1):
            return True

    def _registered(self, i: int) -> bool:
        """The master lists volume server i as a data node (it heartbeated)."""
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['master']}/dir/status", timeout=2) as resp:
            topo = json.load(resp)
        return f":{self.ports[f'volume{i}']}" in json.dumps(topo)

    def _clash(self, name: str) -> bool:
        with open(self._log(name), "rb") as fh:
            fh.seek(self._log_offsets.get(name, 0))
            tail = fh.read().decode(errors="replace")
        return "Port allocation failed" in tail or "address already in use" in tail

    def _port_clash(self) -> bool:
        return any(self._clash(n) for n in self.procs if self._log(n).exists())

    def _ready(self) -> bool:
        if self._port_clash():
            raise GaveUp("weed could not bind its ports")
        self.client("admin", read_timeout=2).list_buckets()
        return True

    def kill_volume_server(self, i: int) -> None:
        """SIGKILL volume server i (a node lost without warning); its data directory stays as it was."""
        proc = self.procs.get(f"volume{i}")
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"volume server {i} is not running")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.append(i)

    def restart_volume_server(self, i: int) -> None:
        """Start volume server i again on its ports and directory (a node back from a crash); wait until the
        master lists it."""
        name = f"volume{i}"
        if self.procs[name].poll() is None:
            raise RuntimeError(f"volume server {i} is running")
        self._log_offsets[name] = self._log(name).stat().st_size
        self.procs[name] = spawn(self._argv_of(name), self._log(name), cwd=self.workdir)
        if not wait_until(lambda: self._up(name), START_TIMEOUT, interval=0.25):
            raise RuntimeError(f"SeaweedFS {name} did not come back in {START_TIMEOUT:.0f}s; log tail:\n"
                               f"{log_tail(self._log(name))}")

    def volume_servers_alive(self) -> list[int]:
        return [i for i in range(self.volume_servers) if self.procs[f"volume{i}"].poll() is None]

    def stop(self) -> None:
        """Stop the gateway, filer, volume servers, then the master (SIGTERM, then SIGKILL); safe twice."""
        for name in reversed(list(self.procs)):
            terminate(self.procs[name], timeout=10)
        self.procs = {}
        self.proc = None
        self._remove_tmp_sockets()
