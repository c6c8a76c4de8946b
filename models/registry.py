"""The model registry: every model the router may serve, on disk, and the
aliases ``champion`` (what serves) and ``challenger`` (what is tried beside
it).

Layout under the registry's root (``models/registry`` by default)::

    <version>/model.onnx     the model, byte for byte as trained
    <version>/model.json     its manifest (features, training data, metrics,
                             parent model, the validation gate's verdict)
    aliases.json             champion, challenger, and every change to them

A version is immutable once added: adding the same version with other
bytes is refused. An alias points at a version that is in the registry; a
change to one is appended to ``history`` with who, when and why, and
``rollback`` walks that history back. The validation gate (``sor model
validate``) records its verdict in the manifest's ``validation["gate"]``;
``promote`` refuses a version the gate did not pass unless the operator
says why it skips the gate, and that reason is kept in the history.

Files are written whole and renamed into place, so a crash leaves either
the old or the new state, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from router.scoring.manifest import ModelLoadError, ModelManifest, manifest_path, read_manifest, sha256_file

DEFAULT_ROOT = Path("models/registry")
ALIASES_FILE = "aliases.json"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "model.json"

Alias = Literal["champion", "challenger"]
ALIASES: tuple[Alias, ...] = ("champion", "challenger")


class RegistryError(Exception):
    """A registry request that cannot be done; the message says why."""


class AliasChange(msgspec.Struct, frozen=True, kw_only=True):
    ts_utc: str
    who: str
    action: Literal["promote", "rollback", "clear"]
    alias: Alias
    version: str | None
    previous: str | None
    note: str = ""
    """Why: a skipped gate's reason, a rollback's cause."""


class Aliases(msgspec.Struct, kw_only=True):
    champion: str | None = None
    challenger: str | None = None
    history: list[AliasChange] = msgspec.field(default_factory=list)

    def get(self, alias: Alias) -> str | None:
        return self.champion if alias == "champion" else self.challenger


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One version as ``sor model list`` shows it."""

    version: str
    created_utc: str
    parent: str
    aliases: list[str]
    gate: str
    """"passed", "failed" or "not validated"."""
    source: str
    rows: int | None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def gate_verdict(m: ModelManifest) -> str:
    gate = m.validation.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        return "not validated"
    return "passed" if gate["passed"] is True else "failed"


class Registry:
    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- reading

    def versions(self) -> list[str]:
        """Every version, oldest first (by the manifest's creation time)."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if (p / MANIFEST_FILE).is_file()]
        return sorted(found, key=lambda v: (self.manifest(v).created_utc, v))

    def aliases(self) -> Aliases:
        p = self.root / ALIASES_FILE
        if not p.exists():
            return Aliases()
        try:
            return msgspec.json.decode(p.read_bytes(), type=Aliases)
        except msgspec.DecodeError as exc:
            raise RegistryError(f"{p} is not a registry's aliases file: {exc}") from exc

    @staticmethod
    def _check_name(name: str) -> None:
        # A version is one directory right under the root: nothing that
        # could name a path elsewhere (an absolute path, "..", a dot file).
        if not name or name.startswith(".") or "/" in name or "\\" in name or os.path.isabs(name):
            raise RegistryError(f"{name!r} cannot name a registry version")

    def resolve(self, name: str) -> str:
        """The version ``name`` is: itself, or what an alias points at."""
        if name in ALIASES:
            v = self.aliases().get(name)  # type: ignore[arg-type]
            if v is None:
                raise RegistryError(f"no {name} in the registry {self.root}")
            return v
        self._check_name(name)
        if not (self.root / name / MANIFEST_FILE).is_file():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"no version {name!r} in the registry {self.root} (versions: {known})")
        return name

    def manifest(self, name: str) -> ModelManifest:
        version = self.resolve(name)
        try:
            return read_manifest(self.root / version / MANIFEST_FILE)
        except ModelLoadError as exc:
            raise RegistryError(str(exc)) from exc

    def model_path(self, name: str) -> Path:
        """The ONNX file of a version or alias (what ``model.path`` takes)."""
        version = self.resolve(name)
        return self.root / version / self.manifest(version).model_file

    def entries(self) -> list[Entry]:
        al = self.aliases()
        out = []
        for v in self.versions():
            m = self.manifest(v)
            rows = m.training.get("rows")
            out.append(Entry(version=v, created_utc=m.created_utc, parent=m.parent,
                             aliases=[a for a in ALIASES if al.get(a) == v], gate=gate_verdict(m),
                             source=_source_label(m.training.get("source")),
                             rows=rows if isinstance(rows, int) else None))
        return out

    # ---------------------------------------------------------------- changes

    def add(self, model: str | os.PathLike[str], parent: str | None = None) -> ModelManifest:
        """Copy a trained model (its ``.onnx`` file or the directory holding
        ``model.onnx``) into the registry under its manifest's version.
        ``parent``: the version it was trained to replace (default: the
        champion now). Its bytes must match the manifest's sha256."""
        src = Path(model)
        onnx_path = src / MODEL_FILE if src.is_dir() else src
        try:
            m = read_manifest(manifest_path(onnx_path))
        except ModelLoadError as exc:
            raise RegistryError(str(exc)) from exc
        if not onnx_path.is_file():
            raise RegistryError(f"model file {onnx_path} not found")
        sha = sha256_file(onnx_path)
        if sha != m.sha256:
            raise RegistryError(f"{onnx_path}: sha256 {sha[:12]}... does not match its manifest's "
                                f"{m.sha256[:12]}...: not the model the manifest describes")
        if m.version in ALIASES:
            raise RegistryError(f"manifest version {m.version!r} is an alias's name")
        self._check_name(m.version)
        dest = self.root / m.version
        if (dest / MANIFEST_FILE).is_file():
            have = self.manifest(m.version)
            if have.sha256 != m.sha256:
                raise RegistryError(f"version {m.version} is in the registry already with other bytes "
                                    f"(sha256 {have.sha256[:12]}...): a version never changes")
            return have
        parent = self.aliases().champion if parent is None else self.resolve(parent)
        entry = msgspec.structs.replace(m, model_file=MODEL_FILE, parent=parent or "")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{m.version}."))
        try:
            _write_atomic(tmp / MODEL_FILE, onnx_path.read_bytes())
            _write_atomic(tmp / MANIFEST_FILE, msgspec.json.format(msgspec.json.encode(entry), indent=2) + b"\n")
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry

    def record_gate(self, name: str, gate: dict[str, object]) -> ModelManifest:
        """Write the validation gate's verdict into a version's manifest
        (``validation["gate"]``); the model's bytes never change."""
        version = self.resolve(name)
        m = self.manifest(version)
        entry = msgspec.structs.replace(m, validation={**m.validation, "gate": gate})
        _write_atomic(self.root / version / MANIFEST_FILE,
                      msgspec.json.format(msgspec.json.encode(entry), indent=2) + b"\n")
        return entry

    def promote(self, name: str, alias: Alias, who: str, skip_gate: str | None = None) -> AliasChange:
        """Point ``alias`` at version ``name``. Refused unless the validation
        gate passed it, or ``skip_gate`` says why it may serve anyway."""
        version = self.resolve(name)
        verdict = gate_verdict(self.manifest(version))
        if verdict != "passed" and not skip_gate:
            raise RegistryError(f"{version}: validation gate {verdict} (sor model validate): it cannot become "
                                f"{alias} (--skip-gate REASON promotes it anyway, on the record)")
        al = self.aliases()
        previous = al.get(alias)
        if previous == version:
            raise RegistryError(f"{version} is the {alias} already")
        note = "" if verdict == "passed" else f"gate {verdict}, skipped: {skip_gate}"
        change = AliasChange(ts_utc=_now(), who=who, action="promote", alias=alias, version=version,
                             previous=previous, note=note)
        changes = [change]
        if alias == "champion":
            al.champion = version
            if al.challenger == version:
                # The challenger won: it is tried beside nothing now.
                al.challenger = None
                changes.append(AliasChange(ts_utc=change.ts_utc, who=who, action="clear", alias="challenger",
                                           version=None, previous=version, note="promoted to champion"))
        else:
            if al.champion == version:
                raise RegistryError(f"{version} is the champion: a challenger must be another model")
            al.challenger = version
        al.history.extend(changes)
        self._save(al)
        return change

    def rollback(self, who: str, reason: str = "") -> AliasChange:
        """The champion goes back to the version it replaced last."""
        al = self.aliases()
        if al.champion is None:
            raise RegistryError(f"no champion in the registry {self.root}: nothing to roll back")
        previous = next((c.previous for c in reversed(al.history)
                         if c.alias == "champion" and c.version == al.champion and c.action == "promote"), None)
        if previous is None:
            raise RegistryError(f"the champion {al.champion} replaced no earlier champion: nothing to roll back to")
        self.resolve(previous)  # still there
        change = AliasChange(ts_utc=_now(), who=who, action="rollback", alias="champion", version=previous,
                             previous=al.champion, note=reason)
        al.champion = previous
        al.history.append(change)
        if al.challenger == previous:
            # Champion and challenger are never one model.
            al.history.append(AliasChange(ts_utc=change.ts_utc, who=who, action="clear", alias="challenger",
                                          version=None, previous=previous, note="rolled back to champion"))
            al.challenger = None
        self._save(al)
        return change

    def _save(self, al: Aliases) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.root / ALIASES_FILE, msgspec.json.format(msgspec.json.encode(al), indent=2) + b"\n")


# -------------------------------------------------------------------- CLI


def _source_label(source: object) -> str:
    """"simulation", "journal" or "journal+sim" from a manifest's ``training["source"]``."""
    if isinstance(source, dict):
        return "+".join(k if k == "journal" else "sim" for k in ("journal", "simulated") if k in source) or "?"
    return str(source or "simulation")


def _fmt_entry(e: Entry) -> str:
    tags = f" [{', '.join(e.aliases)}]" if e.aliases else ""
    rows = f"{e.rows} rows" if e.rows is not None else "rows ?"
    return (f"{e.version:<24} {e.created_utc:<20} gate {e.gate:<13} {e.source:<10} {rows:<12} "
            f"parent {e.parent or '-'}{tags}")


def run_cli(argv: list[str]) -> int:
    """``sor model ...``. Exit 0 done, 1 refused (the registry says why), 2 usage."""
    import argparse
    import getpass
    import json
    import socket
    import sys

    ap = argparse.ArgumentParser(prog="sor model", description="The model registry: versions and the aliases "
                                 "champion (serves) and challenger (tried beside it).")
    ap.add_argument("--registry", default=str(DEFAULT_ROOT), help="the registry's directory (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--who", default=None, help="who does it (default user@host): kept in the history")
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("list", help="every version, with its gate verdict and aliases")
    sh = sub.add_parser("show", help="one version's manifest and the alias history")
    sh.add_argument("name", help="a version, champion or challenger")
    ad = sub.add_parser("add", help="add a trained model (its directory or .onnx file)")
    ad.add_argument("model")
    ad.add_argument("--parent", help="the version it replaces (default: the champion now)")
    pr = sub.add_parser("promote", help="make a version the challenger or the champion")
    pr.add_argument("name")
    pr.add_argument("--to", choices=ALIASES, required=True)
    pr.add_argument("--skip-gate", metavar="REASON", help="promote a version the validation gate did not pass")
    rb = sub.add_parser("rollback", help="the champion goes back to the one it replaced")
    rb.add_argument("--reason", default="")
    pa = sub.add_parser("path", help="print the ONNX file of a version or alias (for model.path, --model)")
    pa.add_argument("name")
    va = sub.add_parser("validate", help="the validation gate: simulation, journal (OPE) and latency against the "
                                         "champion; report files; exit 1 when it fails")
    va.add_argument("name", help="a version or alias in the registry, or a model directory / .onnx file")
    va.add_argument("--against", default="champion",
                    help="the model to beat: a version, alias or path (default: the champion; the shipped "
                         "models/default when the registry has none)")
    va.add_argument("--journal", metavar="PATH|URL", help="estimate both models off-policy on this journal")
    va.add_argument("--scenarios", nargs="+", help="scenario names or TOML files (default: all shipped)")
    va.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (default 1 2 3)")
    va.add_argument("--parents", type=int, help="parents per scenario run (default: the scenario's)")
    va.add_argument("--budget-us", type=int, help="scoring budget (default: the scenario config's model.budget_us)")
    va.add_argument("--out", help="where the report goes (default validation/<version>)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    reg = Registry(args.registry)
    who = args.who or f"{getpass.getuser()}@{socket.gethostname()}"

    def out(obj: object, text: str) -> None:
        print(json.dumps(msgspec.to_builtins(obj), indent=2) if args.json else text)

    try:
        if args.what == "list":
            entries = reg.entries()
            out(entries, "\n".join(_fmt_entry(e) for e in entries) or f"the registry {reg.root} is empty")
        elif args.what == "show":
            version = reg.resolve(args.name)
            m = reg.manifest(version)
            al = reg.aliases()
            history = [c for c in al.history if version in (c.version, c.previous)]
            out({"manifest": m, "aliases": [a for a in ALIASES if al.get(a) == version], "history": history},
                msgspec.json.format(msgspec.json.encode({"manifest": m, "history": history}), indent=2).decode())
        elif args.what == "add":
            m = reg.add(args.model, parent=args.parent)
            out(m, f"added {m.version} (parent {m.parent or '-'}; gate {gate_verdict(m)}) to {reg.root}")
        elif args.what == "promote":
            c = reg.promote(args.name, args.to, who, args.skip_gate)
            out(c, f"{c.alias}: {c.previous or '-'} -> {c.version} by {c.who}" + (f" ({c.note})" if c.note else ""))
        elif args.what == "rollback":
            c = reg.rollback(who, args.reason)
            out(c, f"champion rolled back: {c.previous} -> {c.version} by {c.who}")
        elif args.what == "path":
            print(reg.model_path(args.name))
        elif args.what == "validate":
            return _validate(reg, args)
    except RegistryError as exc:
        print(f"sor model: {exc}", file=sys.stderr)
        return 1
    return 0


def model_file(reg: Registry, name: str) -> tuple[Path, str | None]:
    """An ONNX path for a registry name or a path (a model directory or an
    ``.onnx`` file), and the registry version when it is one; what ``sor
    model validate`` and ``sor ctl model load`` take."""
    p = Path(name)
    if p.suffix == ".onnx" or p.is_dir():
        return (p / MODEL_FILE if p.is_dir() else p), None
    version = reg.resolve(name)
    return reg.model_path(version), version


def _validate(reg: Registry, args: object) -> int:
    from sim import validate  # the backtest and the serving code: loaded only here

    a = vars(args)
    cand, version = model_file(reg, a["name"])
    try:
        champ, _ = model_file(reg, a["against"])
    except RegistryError:
        if a["against"] != "champion":
            raise
        champ = Path(__file__).resolve().parent / "default" / MODEL_FILE
    label = version or read_manifest(manifest_path(cand)).version
    out = Path(a["out"] or f"validation/{label}")
    rep = validate.validate(str(cand), str(champ), scenarios=a["scenarios"], seeds=a["seeds"] or validate.GATE_SEEDS,
                            parents=a["parents"], journal=a["journal"], budget_us=a["budget_us"], out_dir=out)
    print(validate.format_report(rep))
    print(f"\nreport: {out / 'report.txt'}, {out / 'report.json'}, {out / 'report.png'}")
    if version is not None:
        reg.record_gate(version, {"passed": rep["passed"], "against": rep["champion"]["version"],
                                  "simulation": rep["simulation"]["why"], "journal": rep["journal"]["verdict"],
                                  "latency_p99_us": rep["latency"]["candidate"]["p99_us"], "at_utc": _now(),
                                  "report": str(out / "report.json")})
        print(f"verdict recorded in {version}'s manifest")
    return 0 if rep["passed"] else 1
