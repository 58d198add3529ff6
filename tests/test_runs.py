"""Run folders: config hashing, atomic files, the training lock, provenance, and reading a run back."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
import torch

from hdm import runs
from hdm.config import digest


def test_config_hash_is_canonical_and_sensitive():
    a = {"lr": 0.001, "input_hw": [128, 96], "method": "hdm"}
    b = {"method": "hdm", "input_hw": (128, 96), "lr": 0.001}  # other key order, tuple for list
    assert digest(a) == digest(b)
    assert re.fullmatch(r"[0-9a-f]{12}", digest(a))
    assert digest({**a, "lr": 0.002}) != digest(a)
    assert digest({**a, "extra": None}) != digest(a)
    assert runs.run_name("hdm", "smoke", "0123456789ab") == "hdm-smoke-0123456789ab"


def test_atomic_writers_round_trip_and_leave_no_temporary_files(tmp_path):
    runs.write_json(tmp_path / "a" / "x.json", {"v": [1, 2.5], "nan": float("nan")})
    back = runs.read_json(tmp_path / "a" / "x.json")
    assert back["v"] == [1, 2.5] and np.isnan(back["nan"])
    runs.save_torch(tmp_path / "m.pt", {"w": torch.arange(5.0)})
    assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=True)["w"], torch.arange(5.0))
    runs.save_npz(tmp_path / "p.npz", {"c": np.eye(3)})
    with np.load(tmp_path / "p.npz") as f:
        assert np.array_equal(f["c"], np.eye(3))
    runs.write_json(tmp_path / "a" / "x.json", {"v": 2})  # overwrite
    assert runs.read_json(tmp_path / "a" / "x.json") == {"v": 2}
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = runs.write_json(tmp_path / "x.json", {"v": 1})
    with pytest.raises(TypeError):
        runs.write_json(path, {"v": object()})  # not json-able: fails mid-write
    assert runs.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_metrics_csv_round_trips_every_bit(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"epoch": e, "lr": 1e-3, "train_loss": float(rng.random() / 3), "AP": float("nan")} for e in (1, 2)]
    run = runs.Run(tmp_path)
    run.write_metrics(rows)
    df = run.metrics
    assert list(df.columns) == ["epoch", "lr", "train_loss", "AP"]
    assert df["train_loss"].tolist() == [r["train_loss"] for r in rows]  # exact, not approximate
    assert df["AP"].isna().all()


def test_lock_is_exclusive_and_released(tmp_path):
    with runs.RunLock(tmp_path):
        assert json.loads((tmp_path / runs.LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(runs.RunLockedError, match=f"being trained by pid {os.getpid()}"):
            runs.RunLock(tmp_path).acquire()
    with runs.RunLock(tmp_path):  # free again
        pass


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    """The kernel frees a flock when its holder dies: a left-over lock file of a dead process locks nothing."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hdm import runs; runs.RunLock(sys.argv[1]).acquire(); print('held', flush=True); "
        "time.sleep(60)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(runs.RunLockedError, match=f"pid {holder.pid}"):
        runs.RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    with runs.RunLock(tmp_path):
        assert json.loads((tmp_path / runs.LOCK).read_text())["pid"] == os.getpid()


def _race(folder, ready, tried, results):
    """One racer: wait for all, try the lock at once, report, hold it until every racer has tried."""
    lock = runs.RunLock(folder)
    ready.wait()
    try:
        lock.acquire()
        results.put("acquired")
    except runs.RunLockedError:
        results.put("refused")
    tried.wait()
    lock.release()


def test_racing_processes_never_both_take_the_lock(tmp_path):
    """Processes released by a barrier at the same instant on a lock file left by a killed run (the case where
    the old pid-file takeover let two processes in): exactly one wins, every time."""
    context = multiprocessing.get_context("fork")
    for trial in range(20):
        folder = tmp_path / f"run{trial}"
        folder.mkdir()
        (folder / runs.LOCK).write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))  # a dead owner
        ready, tried, results = context.Barrier(4), context.Barrier(4), context.Queue()
        procs = [context.Process(target=_race, args=(folder, ready, tried, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ["acquired", "refused", "refused", "refused"], outcomes


def test_provenance_records_versions_git_and_sessions(tmp_path):
    run = runs.Run(tmp_path)
    prov = run.start_session(seed=3, device=torch.device("cpu"), world_size=1, first_epoch=1)
    for name in ("torch", "numpy", "numba", "pot", "pycocotools"):
        assert prov["packages"][name] == metadata.version(name)
    assert prov["seed"] == 3 and prov["python"] == sys.version.split()[0]
    commit = prov["git"]["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert prov["git"]["dirty"] in (True, False, None)
    run.end_session(finished=False)
    run.start_session(seed=3, device=torch.device("cpu"), world_size=2, first_epoch=5)
    run.end_session(finished=True)
    prov = runs.Run(tmp_path).provenance
    assert [s["first_epoch"] for s in prov["sessions"]] == [1, 5]
    assert [s["world_size"] for s in prov["sessions"]] == [1, 2]
    assert all(s["end"] for s in prov["sessions"]) and prov["finished"] == prov["sessions"][-1]["end"]
    assert prov["sessions"][0]["host"] == socket.gethostname()
    # the machine, per run and per session: CPU, the ISA torch dispatches to, threads (issue 20, item 3)
    for machine in (prov["machine"], *(s["machine"] for s in prov["sessions"])):
        assert machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert machine["cpu"] and machine["torch_threads"] == torch.get_num_threads()
        assert machine["packages"]["numba"] == metadata.version("numba")


def test_run_reads_back_and_rejects_non_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HDM_RUNS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        runs.open_run(tmp_path / "nothing")
    folder = tmp_path / "gaussian-smoke-0123456789ab"
    runs.write_json(folder / runs.CONFIG, {"method": "gaussian", "hash": "0123456789ab"})
    run = runs.open_run("gaussian-smoke-0123456789ab")  # a name under the runs root
    assert run.dir == folder and run.hash == "0123456789ab" and not run.done
    assert run.metrics.empty and run.accuracy_column is None
    assert run.checkpoint == folder / runs.LAST
    with pytest.raises(FileNotFoundError, match="not finished"):
        run.predictions()
    run.write_metrics([{"epoch": 1, "PCK": 0.5}])
    assert run.accuracy_column == "PCK"
    runs.write_text(folder / runs.DONE, "now\n")
    assert run.done and run.checkpoint == folder / runs.FINAL
    assert [r.dir for r in runs.list_runs()] == [folder]
    assert runs.list_runs(tmp_path / "missing") == []
    assert isinstance(run.metrics, pd.DataFrame)


def test_runs_lists_a_config_that_is_not_an_object_as_damaged(tmp_path, monkeypatch, capsys):
    """Issue #18: a config.json holding a json list crashed ``hdm runs`` (AttributeError) and hid every other run."""
    from hdm import cli

    monkeypatch.setenv("HDM_RUNS", str(tmp_path))
    runs.write_json(tmp_path / "gaussian-smoke-000000000000" / runs.CONFIG, [1, 2])
    runs.write_json(tmp_path / "gaussian-smoke-111111111111" / runs.CONFIG, {"identity": ["not", "a", "dict"]})
    runs.write_json(tmp_path / "hdm-smoke-222222222222" / runs.CONFIG,
                    {"method": "hdm", "hash": "222222222222", "identity": {"code": runs.code_version()}})  # fmt: skip
    assert cli.main(["runs"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(word, path.rsplit("/", 1)[1]) for word, path in listed] == [
        ("damaged", "gaussian-smoke-000000000000"), ("damaged", "gaussian-smoke-111111111111"),
        ("open", "hdm-smoke-222222222222")]  # fmt: skip
    with pytest.raises(runs.DamagedRunError, match=r"config\.json.*not a json object.*delete"):
        runs.Run(tmp_path / "gaussian-smoke-000000000000").config_dict


@pytest.mark.parametrize("write", ["json", "torch", "npz", "text"])
def test_a_failed_write_names_the_path(tmp_path, monkeypatch, write):
    """Issue #18: a full disk (ENOSPC) said "[Errno 28] No space left on device" and named no file."""
    import errno

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "replace", full)
    target = tmp_path / "hdm-smoke-0123456789ab" / f"file.{write}"
    writer = {"json": lambda: runs.write_json(target, {"v": 1}), "torch": lambda: runs.save_torch(target, {"v": 1}),
              "npz": lambda: runs.save_npz(target, {"v": np.zeros(3)}), "text": lambda: runs.write_text(target, "v")}
    with pytest.raises(OSError) as error:  # what the command line prints as one line, exit status 2
        writer[write]()
    message = str(error.value)
    assert str(target) in message and "No space left on device" in message and "\n" not in message, message
    assert error.value.errno == errno.ENOSPC and "free space" in message
    assert not any(".tmp-" in p.name for p in target.parent.iterdir())  # the temporary file is gone
