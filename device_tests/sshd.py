"""A throwaway OpenSSH server on 127.0.0.1 for the ssh runner's real test: its own host key,
a client key generated in a temp folder, key-only login, a free port, nothing else touched."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")


def find_sshd() -> str | None:
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None) or shutil.which("sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoopbackSshd:
    proc: subprocess.Popen
    port: int
    user: str
    key: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_sshd(tmp: Path, extra_config: list[str] | None = None) -> LoopbackSshd:
    """Start the server; `extra_config` lines are appended to its sshd_config (the emulated ARM64 board
    adds ChrootDirectory, so each login's commands run in its arm64 root under qemu)."""
    sshd = find_sshd()
    if not sshd or not shutil.which("ssh-keygen"):
        raise FileNotFoundError("OpenSSH server not installed (apt-get install -y openssh-server)")
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    for name in ("host_ed25519", "client_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgeface-test-{name}", "-f", str(tmp / name)], check=True)
    (tmp / "authorized_keys").write_text((tmp / "client_ed25519.pub").read_text())
    os.chmod(tmp / "authorized_keys", 0o600)
    if os.geteuid() == 0:
        # sshd refuses to start as root without its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    user = getpass.getuser()
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join([
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {tmp / 'host_ed25519'}",
            f"PidFile {tmp / 'sshd.pid'}",
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "StrictModes no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            *(extra_config or []),
        ]) + "\n"
    )
    log = tmp / "sshd.log"
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-1500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return LoopbackSshd(proc, port, user, tmp / "client_ed25519", log)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 15 s: {log.read_text()[-1500:]}")
