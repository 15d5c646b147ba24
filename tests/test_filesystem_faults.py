"""Filesystem faults (issue #24), as a matrix of the commands that write x the faults: a full disk (at the first
write, and in the middle of one), a read-only output folder, a folder locked by another process, a missing input and
a file where the output folder belongs. Each row ends in one line on stderr naming the path (exit 2, no traceback),
leaves no temporary or half-written file, and leaves what an earlier run wrote there byte for byte as it was (in the
middle of a write: earlier files as they were or replaced whole, records appended whole).

A full or read-only file system is real where the machine lets a test mount one in a private mount namespace
(``unshare -rm``: a tmpfs with only so many KB free, a read-only bind of the folder); elsewhere tests/fs_fault_shim.py
makes Python's own writes fail the same way (COTBRIDGE_TEST_FS_SHIM=1 chooses it here too).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.test_faults import HOLD_LOCK, assert_one_line_error, cli, snapshot
from tests.test_released_traces import ROWS

# ~2 minutes of subprocesses: run by `make test`, left out of test-min's lower-version pass (nothing here depends on
# a library's version), which keeps CI inside its time on the slower CPU
pytestmark = pytest.mark.slow

SHIM = Path(__file__).with_name("fs_fault_shim.py")
TEACH = ["teach", "--task", "synthetic_arithmetic", "--teacher", "reference", "-D", "2"]
TRACES = ["--layout", "openr1_math", "--task", "math500"]


@functools.cache
def kernel_faults() -> bool:
    """Can this machine mount a tmpfs and a read-only bind in a private mount namespace?"""
    if os.environ.get("COTBRIDGE_TEST_FS_SHIM") or not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory() as d:
        probe = 'mount -t tmpfs -o size=4k tmpfs "$1" && mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1"'
        done = subprocess.run(["unshare", "-rm", "sh", "-c", probe, "sh", d], capture_output=True, timeout=60)
        return done.returncode == 0


# A tmpfs over the folder holding a copy of what it held, with `free` KB left (a 4 KB filler keeps a size of 0 from
# meaning "unlimited"); what the command leaves there is copied out, since the mount ends with the namespace.
FULL_DISK = """
F=$1; SEED=$2; AFTER=$3; FREE=$4; shift 4
mount -t tmpfs -o size=256m tmpfs "$F" && cp -a "$SEED/." "$F/" || exit 97
used=$(df -k --output=used "$F" | tail -1)
mount -o remount,size=$((used + FREE + 4))k "$F" && head -c 4096 /dev/zero > "$F/.fs-filler" || exit 97
"$@"; rc=$?
rm -f "$F/.fs-filler"; mkdir -p "$AFTER" && cp -a "$F/." "$AFTER/"; exit $rc
"""
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" || exit 97; shift; exec "$@"'


def cli_with_fault(kind: str, folder: Path, args: list, env: dict, free_kb: int = 0) -> subprocess.CompletedProcess:
    """``cotbridge ARGS`` with ``folder`` on a full disk (``free_kb`` left) or a read-only file system."""
    args = [str(a) for a in args]
    full_env = {**os.environ, **env}
    if not kernel_faults():
        shim = [sys.executable, str(SHIM), kind, str(folder), str(free_kb * 1024), "--", *args]
        return subprocess.run(shim, capture_output=True, text=True, timeout=600, env=full_env)
    command = [sys.executable, "-m", "cotbridge", *args]
    if kind == "readonly":
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", READ_ONLY, "sh", str(folder), *command],
            capture_output=True,
            text=True,
            timeout=600,
            env=full_env,
        )
    else:
        seed, after = folder.with_name(folder.name + ".seed"), folder.with_name(folder.name + ".after")
        shutil.copytree(folder, seed, symlinks=True)
        done = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                FULL_DISK,
                "sh",
                str(folder),
                str(seed),
                str(after),
                str(free_kb),
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=full_env,
        )
        shutil.rmtree(seed)
        if after.exists():  # the folder as the command left it on the full disk
            shutil.rmtree(folder)
            after.rename(folder)
    assert done.returncode != 97, done.stderr[-2000:]  # the fault could not be set up
    return done


# ---------------------------------------------------------------- inputs, and the outputs of earlier runs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir):
    """Small and larger inputs of each command (the larger make the output that fills the disk)."""
    d = tmp_path_factory.mktemp("fs-inputs")
    env = {"COTBRIDGE_CACHE": str(d / "cache.sqlite")}
    for limit in (4, 30):
        done = cli(*TEACH, "--limit", limit, "--run-dir", d / f"run{limit}", env=env)
        assert done.returncode == 0, done.stderr[-2000:]
    for n, name in ((1, "preds"), (200, "preds_more")):
        (d / f"{name}.jsonl").write_text('{"output": "The answer is 1", "target": "1"}\n' * n)
    item = {"question": "Where was Ada born?", "context": "Ada was born in London.", "rationale": "In London."}
    for n, name in ((2, "items"), (100, "items_more")):
        (d / f"{name}.jsonl").write_text((json.dumps(item) + "\n") * n)
    for n, name in ((1, "traces"), (20, "traces_more")):
        (d / f"{name}.jsonl").write_text((json.dumps(ROWS["openr1_math"][0]) + "\n") * n)
    (d / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Q{i} ###", "completion": f" A{i} --> {i}"}) + "\n" for i in range(8))
    )
    recipe = {
        "name": "tiny",
        "run_dir": str(d / "unused"),
        "task": "synthetic_coin_flip:k=2,n_test=8",
        "train_limit": 12,
        "teacher": {"backend": "reference"},
        "student": {"model": str(tiny_model_dir), "lora": False, "max_steps": 2, "batch_size": 4},
        "eval": {"limit": 8, "max_tokens": 8, "batch_size": 8},
        "methods": [{"name": "ftcot", "kind": "distill", "samples": 1}],
    }
    (d / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "student": {**recipe["student"], "save_strategy": "no"}}))
    return d, env, tiny_model_dir


def train_args(i: Path, model: Path, o: Path) -> list:
    steps = ["--set", "max_steps=4", "--set", "save_strategy=steps", "--set", "save_steps=2"]
    return ["train", i / "rows.jsonl", "--model", model, "-o", o / "student", "--set", "lora=false", *steps]


@dataclass
class Command:
    """A command that writes into the folder ``o``: how an earlier run filled it, the run that meets the fault
    (bigger, so that it fills a disk), the folder it locks, the same command with a missing input, and with ``o``
    below a plain file. ``mid``: KB left free for a fault in the middle of its writes (real disk, shim)."""

    earlier: Callable[[Path, Path, Path], list] | None
    again: Callable[[Path, Path, Path], list]
    prepare: Callable[[Path], object] | None = None
    mid: tuple[int, int] = (8, 8)
    lock: str | None = None
    missing: Callable[[Path, Path], list] | None = None
    below_file: Callable[[Path, Path], list] | None = None
    appends: tuple[str, ...] = field(default=())  # record files: earlier records kept, whole records may be added


COMMANDS = {
    "teach": Command(
        earlier=None,  # a copy of the inputs' run4
        again=lambda i, m, o: [*TEACH, "--limit", "30", "--run-dir", o / "run"],
        missing=lambda i, o: [
            "teach",
            "--task",
            "synthetic_arithmetic",
            "--limit",
            "2",
            "--teacher",
            "replay",
            "--teacher-model",
            i / "missing.jsonl",
            "--set",
            "teacher.options.id_field=id",
            "--run-dir",
            o / "replayed",
        ],
        appends=("run/teacher/synthetic_arithmetic.jsonl",),
    ),
    "curate": Command(
        earlier=lambda i, m, o: ["curate", i / "run4/teacher/synthetic_arithmetic.jsonl", "-o", o / "data"],
        again=lambda i, m, o: ["curate", i / "run30/teacher/synthetic_arithmetic.jsonl", "-o", o / "data"],
    ),
    "curate_hf_dataset": Command(  # a datasets folder (arrow, state, card) too: the earlier one whole, or the new
        earlier=lambda i, m, o: [
            "curate",
            i / "run4/teacher/synthetic_arithmetic.jsonl",
            "-o",
            o / "data",
            "--hf-dataset",
        ],
        again=lambda i, m, o: [
            "curate",
            i / "run30/teacher/synthetic_arithmetic.jsonl",
            "-o",
            o / "data",
            "--hf-dataset",
        ],
        mid=(48, 48),  # train.jsonl and curation.json fit, the arrow file does not
    ),
    "eval": Command(
        earlier=lambda i, m, o: [
            "eval",
            "--task",
            "synthetic_arithmetic",
            "--predictions",
            i / "preds.jsonl",
            "--gold-field",
            "target",
            "-o",
            o / "scored",
        ],
        again=lambda i, m, o: [
            "eval",
            "--task",
            "synthetic_arithmetic",
            "--predictions",
            i / "preds_more.jsonl",
            "--gold-field",
            "target",
            "-o",
            o / "scored",
        ],
        lock="scored",
    ),
    "score": Command(
        earlier=lambda i, m, o: ["score", i / "items.jsonl", "-o", o / "scored.jsonl", "--scorers", "grounding"],
        again=lambda i, m, o: ["score", i / "items_more.jsonl", "-o", o / "scored.jsonl", "--scorers", "grounding"],
        missing=lambda i, o: ["score", i / "missing.jsonl", "-o", o / "scored.jsonl", "--scorers", "grounding"],
        below_file=lambda i, d: ["score", i / "items.jsonl", "-o", d / "plain-file" / "s.jsonl"],
    ),
    "traces": Command(
        earlier=lambda i, m, o: ["traces", i / "traces.jsonl", *TRACES, "-o", o / "t.jsonl"],
        again=lambda i, m, o: ["traces", i / "traces_more.jsonl", *TRACES, "-o", o / "t.jsonl"],
        missing=lambda i, o: ["traces", i / "missing.jsonl", *TRACES, "-o", o / "t.jsonl"],
        below_file=lambda i, d: ["traces", i / "traces.jsonl", *TRACES, "-o", d / "plain-file" / "t.jsonl"],
        appends=("t.jsonl",),
    ),
    "view": Command(
        earlier=lambda i, m, o: ["view", i / "run4/teacher/synthetic_arithmetic.jsonl", "--out", o / "v.html"],
        again=lambda i, m, o: ["view", i / "run30/teacher/synthetic_arithmetic.jsonl", "--out", o / "v.html"],
        missing=lambda i, o: ["view", i / "missing.jsonl", "--out", o / "v.html"],
        below_file=lambda i, d: [
            "view",
            i / "run4/teacher/synthetic_arithmetic.jsonl",
            "--out",
            d / "plain-file" / "v.html",
        ],
    ),
    "train": Command(
        # 4 steps, saved at 2 and 4; checkpoint-4 is then removed, as if the run had been stopped before it
        earlier=lambda i, m, o: train_args(i, m, o),
        prepare=lambda o: shutil.rmtree(o / "student" / "checkpoint-4"),
        again=lambda i, m, o: train_args(i, m, o),  # resumes at step 2; the disk fills while checkpoint-4 is saved
        mid=(300, 2),
        lock="student",
    ),
    "run": Command(
        earlier=lambda i, m, o: ["run", i / "recipe.yaml", "--set", f"run_dir={o / 'rrun'}", "--until", "curate"],
        again=lambda i, m, o: ["run", i / "recipe.yaml", "--set", f"run_dir={o / 'rrun'}"],
        mid=(100, 4),
        lock="rrun",
        missing=lambda i, o: ["run", i / "missing.yaml", "--set", f"run_dir={o / 'rrun'}"],
        below_file=lambda i, d: ["run", i / "recipe.yaml", "--set", f"run_dir={d / 'plain-file' / 'rrun'}"],
    ),
}


@pytest.fixture(scope="module")
def earlier_outputs(inputs, tmp_path_factory):
    """Each command's folder as an earlier run left it, made once and copied into each row (``o``)."""
    i, env, model = inputs
    made: dict[str, Path] = {}

    def folder(name: str, o: Path) -> Path:
        if name == "run":  # a run directory records where it is: made in place
            o.mkdir()
            done = cli(*COMMANDS[name].earlier(i, model, o), env=env)
            assert done.returncode == 0, done.stderr[-2000:]
            return o
        if name not in made:
            template = tmp_path_factory.mktemp(f"earlier-{name}") / "out"
            template.mkdir()
            command = COMMANDS[name]
            if command.earlier is None:
                shutil.copytree(i / "run4", template / "run")
            else:
                done = cli(*command.earlier(i, model, template), env=env)
                assert done.returncode == 0, done.stderr[-2000:]
            if command.prepare is not None:
                command.prepare(template)
            made[name] = template
        shutil.copytree(made[name], o, symlinks=True)
        return o

    return folder


# ---------------------------------------------------------------- what every row checks


def complete(path: Path) -> bool:
    """A file written whole: JSON, JSONL and YAML parse to the end, an HTML page ends with its closing tag."""
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        return data == b"" or data.endswith(b"\n") and all(json.loads(x) for x in data.splitlines() if x.strip())
    if path.suffix == ".json":
        return json.loads(data) is not None
    if path.suffix == ".yaml":
        return yaml.safe_load(data) is not None
    if path.suffix == ".html":
        return data.rstrip().endswith(b"</html>")
    return True


def assert_left_whole(o: Path, before: dict[str, bytes], strict: bool, appends: tuple[str, ...] = ()) -> None:
    """No temporary file and no half-written one; with ``strict`` the folder is byte for byte as it was, else each
    earlier file is as it was or replaced by a whole one (record files: the earlier records, whole ones after)."""
    leftovers = [p for p in o.rglob("*") if p.name.endswith(".tmp") or ".saving" in p.name or ".fs-filler" in p.name]
    assert leftovers == [], leftovers
    after = snapshot(o)
    if strict:
        assert after.keys() == before.keys() and after == before, sorted(set(after) ^ set(before))
        return
    assert before.keys() <= after.keys(), sorted(set(before) - set(after))
    for name, data in after.items():
        if name in appends:
            assert data.startswith(before.get(name, b"")), name
        if data != before.get(name):
            assert complete(o / name), f"{name} was left half-written"
    incomplete = [p for p in o.rglob("checkpoint-*") if p.is_dir() and not (p / "trainer_state.json").exists()]
    assert incomplete == [], incomplete
    for folder in o.rglob("hf_dataset"):  # a datasets folder: loads, with its card, and is the earlier one or new
        from datasets import load_from_disk

        assert len(load_from_disk(str(folder))) > 0 and (folder / "README.md").exists(), folder


def rows(fault: str, names: list[str]) -> list:
    return [pytest.param(name, id=f"{fault}-{name}") for name in names]


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("name", rows("full-at-first-write", list(COMMANDS)))
def test_a_full_disk_before_the_first_write_changes_nothing(name, inputs, earlier_outputs, tmp_path):
    i, env, model = inputs
    o = earlier_outputs(name, tmp_path / "out")
    before = snapshot(o)
    done = cli_with_fault("full", o, COMMANDS[name].again(i, model, o), env, free_kb=0)
    assert_one_line_error(done, str(o), "No space left on device", "free some space")
    assert_left_whole(o, before, strict=True)


@pytest.mark.parametrize("name", rows("full-mid-write", list(COMMANDS)))
def test_a_disk_that_fills_mid_write_leaves_whole_files(name, inputs, earlier_outputs, tmp_path):
    i, env, model = inputs
    o = earlier_outputs(name, tmp_path / "out")
    before = snapshot(o)
    command = COMMANDS[name]
    free = command.mid[0] if kernel_faults() else command.mid[1]
    done = cli_with_fault("full", o, command.again(i, model, o), env, free_kb=free)
    assert_one_line_error(done, str(o), "No space left on device", "files written before are kept")
    assert_left_whole(o, before, strict=False, appends=command.appends)


@pytest.mark.parametrize("name", rows("read-only", list(COMMANDS)))
def test_a_read_only_output_folder_is_named_and_kept(name, inputs, earlier_outputs, tmp_path):
    i, env, model = inputs
    o = earlier_outputs(name, tmp_path / "out")
    before = snapshot(o)
    done = cli_with_fault("readonly", o, COMMANDS[name].again(i, model, o), env)
    assert_one_line_error(done, str(o), "Read-only file system")
    assert_left_whole(o, before, strict=True)


@pytest.mark.parametrize("name", rows("locked", [n for n, c in COMMANDS.items() if c.lock]))
def test_a_folder_another_process_writes_is_refused(name, inputs, earlier_outputs, tmp_path):
    i, env, model = inputs
    o = earlier_outputs(name, tmp_path / "out")
    before = snapshot(o)
    target = o / COMMANDS[name].lock
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = cli(*COMMANDS[name].again(i, model, o), env=env)
        assert_one_line_error(done, str(target), f"in use by PID {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert_left_whole(o, before, strict=True)


@pytest.mark.parametrize("name", rows("missing-input", [n for n, c in COMMANDS.items() if c.missing]))
def test_a_missing_input_is_named_and_nothing_is_written(name, inputs, earlier_outputs, tmp_path):
    i, env, model = inputs
    o = earlier_outputs(name, tmp_path / "out")
    before = snapshot(o)
    done = cli(*COMMANDS[name].missing(i, o), env=env)
    assert_one_line_error(done, str(i / "missing."))
    assert_left_whole(o, before, strict=True)


@pytest.mark.parametrize("name", rows("file-where-a-folder-belongs", [n for n, c in COMMANDS.items() if c.below_file]))
def test_a_file_where_the_output_folder_belongs_is_named(name, inputs, tmp_path):
    i, env, model = inputs
    (tmp_path / "plain-file").write_text("not a folder")
    done = cli(*COMMANDS[name].below_file(i, tmp_path), env=env)
    assert_one_line_error(done, str(tmp_path / "plain-file"), "a file stands where a folder belongs")
    assert (tmp_path / "plain-file").read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file"]


def test_a_model_save_that_fails_keeps_the_previous_model_whole(tmp_path):
    """The saves outside the SFT trainer (the RL student, instruct's merged QLoRA student, scratch models) go through
    save_pretrained_staged: a disk that fills after the weights were half written leaves the earlier files as they
    were, no staging folder, and an error that names the model folder."""
    import errno

    from cotbridge.fileio import save_pretrained_staged

    class Weights:
        def save_pretrained(self, folder):
            (Path(folder) / "model.safetensors").write_bytes(b"new weights")

    class FullDisk:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "tokenizer.json"))

    out = tmp_path / "student"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"old weights")
    (out / "tokenizer.json").write_bytes(b"old tokenizer")
    with pytest.raises(OSError) as failed:
        save_pretrained_staged(out, Weights(), FullDisk())
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(out)
    assert snapshot(out) == {"model.safetensors": b"old weights", "tokenizer.json": b"old tokenizer"}
    save_pretrained_staged(out, Weights())
    assert snapshot(out) == {"model.safetensors": b"new weights", "tokenizer.json": b"old tokenizer"}
