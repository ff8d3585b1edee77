"""Device runners: the exact host commands they build, and quoting that survives a real shell."""
import json
import subprocess
import sys

import pytest

from edgeface.bench import runners
from edgeface.bench.runners import AdbRunner, DeviceError, LocalRunner, SshRunner, runner_for
from edgeface.core.profiles import Device, load_profile

AWKWARD = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "a b", "it's", '"q"', "$HOME", "semi;colon", "*"]


def test_ssh_command_construction():
    r = SshRunner(host="board.local", user="pi", port=2222, key="~/.ssh/board", workdir="bench")
    cmd = r.command(["python3", "-m", "edgeface.bench.probe", "bundle dir"])
    assert cmd[0] == "ssh" and cmd[-2] == "pi@board.local" and cmd[cmd.index("-p") + 1] == "2222"
    assert "BatchMode=yes" in cmd and cmd[cmd.index("-i") + 1].endswith("/.ssh/board") and "~" not in cmd[cmd.index("-i") + 1]
    assert cmd[-1] == "python3 -m edgeface.bench.probe 'bundle dir'"  # one quoted string for the remote shell
    put = r.put_command("/tmp/x.whl", r.path("dist", "x.whl"))
    assert put[0] == "scp" and put[put.index("-P") + 1] == "2222" and put[-2:] == ["/tmp/x.whl", "pi@board.local:bench/dist/x.whl"]
    get = r.get_command("bench/results/r.json", "/tmp/r.json")
    assert get[-2:] == ["pi@board.local:bench/results/r.json", "/tmp/r.json"] and "-r" in get
    assert SshRunner(host="h", port=22).command(["true"])[-2] == "h"  # no user: ssh's default


def test_adb_command_construction(monkeypatch):
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    r = AdbRunner(serial="R58M123", workdir="/data/local/tmp/edgeface")
    assert r.command(["ls", "a b"]) == ["adb", "-s", "R58M123", "shell", "ls 'a b'"]
    assert r.put_command("m.tflite", r.path("bundle", "m.tflite")) == ["adb", "-s", "R58M123", "push", "m.tflite", "/data/local/tmp/edgeface/bundle/m.tflite"]
    assert r.get_command("/data/local/tmp/edgeface/r.json", "r.json") == ["adb", "-s", "R58M123", "pull", "/data/local/tmp/edgeface/r.json", "r.json"]
    assert AdbRunner().command(["true"]) == ["adb", "shell", "true"]
    monkeypatch.setenv("ANDROID_SERIAL", "emulator-5554")
    assert AdbRunner().command(["true"])[:3] == ["adb", "-s", "emulator-5554"]


def test_adb_without_adb_is_unreachable_with_reason(monkeypatch):
    monkeypatch.setattr(runners.shutil, "which", lambda name: None)
    ok, why = AdbRunner(serial="x").reachable()
    assert not ok and "adb is not installed" in why


@pytest.mark.parametrize("runner", [SshRunner(host="h"), AdbRunner(serial="s")], ids=["ssh", "adb"])
def test_remote_quoting_round_trips_through_a_real_shell(runner):
    # What the remote sh receives is the last argument; running it in sh must give back the argv.
    remote_string = runner.command(AWKWARD)[-1]
    out = subprocess.run(["sh", "-c", remote_string], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == AWKWARD[3:]


def test_local_runner_runs_copies_and_reports_failures(tmp_path):
    r = LocalRunner(workdir=str(tmp_path / "dev"))
    r.run(["mkdir", "-p", r.workdir])
    (tmp_path / "f.txt").write_text("payload")
    r.put(tmp_path / "f.txt", r.path("f.txt"))
    r.get(r.path("f.txt"), tmp_path / "back" / "f.txt")
    assert (tmp_path / "back" / "f.txt").read_text() == "payload"
    assert r.reachable()[0]
    with pytest.raises(DeviceError, match="exit 3"):
        r.run([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(DeviceError, match="cannot run"):
        r.run(["/no/such/program"])


def test_ssh_to_a_closed_port_is_unreachable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, why = SshRunner(host="127.0.0.1", port=port, workdir="x").reachable(timeout=20)
    assert not ok and why


def test_runner_for_profiles():
    assert isinstance(runner_for(load_profile("x86-server-onnxruntime").device, "/tmp/w"), LocalRunner)
    pi = runner_for(load_profile("raspberry-pi5-tflite").device)
    assert isinstance(pi, SshRunner) and pi.host == "raspberrypi.local" and pi.user == "pi"
    phone = runner_for(load_profile("android-phone-tflite-int8").device)
    assert isinstance(phone, AdbRunner) and phone.workdir == "/data/local/tmp/edgeface"
    with pytest.raises(ValueError, match="unknown device kind"):
        runner_for(Device(kind="carrier-pigeon"))
