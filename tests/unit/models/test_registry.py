"""The model registry (models.registry) and ``sor model``: versions are
immutable and checked against their manifest, aliases move only through
the gate (or on the record), every change is in the history, rollback
walks it back, and a crash mid-write leaves the old state."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import msgspec
import pytest

from models.registry import ALIASES_FILE, Registry, RegistryError, gate_verdict
from router.cli import main
from router.scoring.manifest import read_manifest, sha256_file, write_manifest

DEFAULT = Path(__file__).resolve().parents[3] / "models" / "default"
_made = itertools.count()


def trained(tmp: Path, version: str, gate: bool | None = None, onnx_bytes: bytes | None = None) -> Path:
    """A model directory as ``sor train`` writes one, under ``version``."""
    d = tmp / f"out-{version}"
    d.mkdir()
    if onnx_bytes is None:
        shutil.copyfile(DEFAULT / "model.onnx", d / "model.onnx")
    else:
        (d / "model.onnx").write_bytes(onnx_bytes)
    m = read_manifest(DEFAULT / "model.json")
    validation = dict(m.validation)
    if gate is not None:
        validation["gate"] = {"passed": gate}
    m = msgspec.structs.replace(m, version=version, sha256=sha256_file(d / "model.onnx"), validation=validation,
                                created_utc=f"2026-12-01T12:{next(_made):02d}:00Z")  # in the order made
    write_manifest(d / "model.json", m)
    return d


def test_add_copies_the_model_and_records_the_champion_as_parent(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    a = reg.add(trained(tmp_path, "m-a", gate=True))
    assert a.parent == ""
    reg.promote("m-a", "champion", "alice")
    b = reg.add(trained(tmp_path, "m-b", gate=True))
    assert b.parent == "m-a"
    assert reg.model_path("m-b") == tmp_path / "reg" / "m-b" / "model.onnx"
    assert sha256_file(reg.model_path("m-b")) == b.sha256
    assert [e.version for e in reg.entries()] == ["m-a", "m-b"]
    assert reg.entries()[0].aliases == ["champion"]


def test_a_model_whose_bytes_are_not_its_manifests_is_refused(tmp_path: Path) -> None:
    d = trained(tmp_path, "m-a")
    (d / "model.onnx").write_bytes(b"not the model")
    with pytest.raises(RegistryError, match="does not match its manifest"):
        Registry(tmp_path / "reg").add(d)
    assert not (tmp_path / "reg" / "m-a").exists()


def test_a_version_never_changes(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(trained(tmp_path, "m-a"))
    # The same bytes again: nothing to do.
    again = tmp_path / "again"
    again.mkdir()
    assert reg.add(trained(again, "m-a")).version == "m-a"
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(RegistryError, match="already with other bytes"):
        reg.add(trained(other, "m-a", onnx_bytes=(DEFAULT / "model.onnx").read_bytes() + b"\0"))


def test_promotion_needs_the_gate_or_a_reason_on_the_record(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(trained(tmp_path, "m-new"))
    reg.add(trained(tmp_path, "m-bad", gate=False))
    assert gate_verdict(reg.manifest("m-new")) == "not validated"
    with pytest.raises(RegistryError, match="validation gate not validated"):
        reg.promote("m-new", "champion", "alice")
    with pytest.raises(RegistryError, match="validation gate failed"):
        reg.promote("m-bad", "challenger", "alice")
    c = reg.promote("m-new", "champion", "alice", skip_gate="first model, before the gate")
    assert (c.version, c.previous, c.who) == ("m-new", None, "alice")
    assert c.note == "gate not validated, skipped: first model, before the gate"
    assert reg.aliases().history == [c]


def test_challenger_then_champion_then_rollback(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    for v in ("m1", "m2", "m3"):
        reg.add(trained(tmp_path, v, gate=True))
    reg.promote("m1", "champion", "ops")
    with pytest.raises(RegistryError, match="a challenger must be another model"):
        reg.promote("m1", "challenger", "ops")
    reg.promote("m2", "challenger", "ops")
    assert (reg.aliases().champion, reg.aliases().challenger) == ("m1", "m2")
    reg.promote("challenger", "champion", "ops")
    al = reg.aliases()
    assert (al.champion, al.challenger) == ("m2", None), "the winning challenger is tried beside nothing"
    reg.promote("m3", "champion", "ops")
    assert reg.rollback("ops", "canary shortfall").version == "m2"
    assert reg.rollback("ops").version == "m1"
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        reg.rollback("ops")
    actions = [(c.action, c.alias, c.version) for c in reg.aliases().history]
    assert actions == [("promote", "champion", "m1"), ("promote", "challenger", "m2"),
                       ("promote", "champion", "m2"), ("clear", "challenger", None),
                       ("promote", "champion", "m3"), ("rollback", "champion", "m2"),
                       ("rollback", "champion", "m1")]


def test_unknown_names_say_what_there_is(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="no champion"):
        reg.model_path("champion")
    reg.add(trained(tmp_path, "m1"))
    with pytest.raises(RegistryError, match=r"no version 'm9' .*\(versions: m1\)"):
        reg.resolve("m9")


def test_a_half_written_aliases_file_never_replaces_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(trained(tmp_path, "m1", gate=True))
    reg.add(trained(tmp_path, "m2", gate=True))
    reg.promote("m1", "champion", "ops")
    before = (tmp_path / "reg" / ALIASES_FILE).read_bytes()

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("models.registry.os.replace", crash)
    with pytest.raises(OSError):
        reg.promote("m2", "champion", "ops")
    assert (tmp_path / "reg" / ALIASES_FILE).read_bytes() == before
    assert [p.name for p in (tmp_path / "reg").iterdir() if p.name.startswith(".")] == []


def test_the_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = str(tmp_path / "reg")
    assert main(["model", "--registry", reg, "add", str(trained(tmp_path, "m1"))]) == 0
    assert main(["model", "--registry", reg, "promote", "m1", "--to", "champion"]) == 1
    assert "validation gate not validated" in capsys.readouterr().err
    assert main(["model", "--registry", reg, "--who", "bob", "promote", "m1", "--to", "champion",
                 "--skip-gate", "shipped"]) == 0
    capsys.readouterr()
    assert main(["model", "--registry", reg, "--json", "list"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["version"], entry["aliases"], entry["gate"]) == ("m1", ["champion"], "not validated")
    assert main(["model", "--registry", reg, "path", "champion"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "reg" / "m1" / "model.onnx")
    assert main(["model", "--registry", reg, "rollback"]) == 1
    assert main(["model", "--registry", reg, "nope"]) == 2
    # What the registry holds is read by the scorer's own manifest reader.
    assert read_manifest(tmp_path / "reg" / "m1" / "model.json").version == "m1"


def test_sor_train_register_adds_the_new_model_with_the_champion_as_its_parent(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    Registry(reg).add(trained(tmp_path, "m1", gate=True))
    Registry(reg).promote("m1", "champion", "ops")
    out = tmp_path / "out"
    assert main(["train", "--scenarios", "calm", "--seeds", "101", "--parents", "30", "--epochs", "1",
                 "--hidden", "8", "--out", str(out), "--quiet", "--register", "--registry", str(reg)]) == 0
    new = read_manifest(out / "model.json").version
    m = Registry(reg).manifest(new)
    assert (m.parent, gate_verdict(m)) == ("m1", "not validated")
    assert Registry(reg).aliases().champion == "m1", "registering serves nothing"


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../outside", ".hidden", "a/b", ""])
def test_names_that_would_leave_the_registry_are_refused(tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(trained(tmp_path, "x", gate=True), outside)
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="cannot name a registry version"):
        reg.promote(name, "champion", "ops")


def test_rollback_onto_the_challenger_clears_the_challenger(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    for v in ("m1", "m2"):
        reg.add(trained(tmp_path, v, gate=True))
    reg.promote("m1", "champion", "ops")
    reg.promote("m2", "champion", "ops")
    reg.promote("m1", "challenger", "ops")
    reg.rollback("ops")
    al = reg.aliases()
    assert (al.champion, al.challenger) == ("m1", None)
