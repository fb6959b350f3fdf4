"""Command line of the schemas package: the compatibility gate, releases and documentation.

    python -m schemas check [RECORD ...] [--strict]    every current definition against its releases
    python -m schemas release RECORD                   add the current definition as the next release
    python -m schemas docs [--out FILE]                Markdown documentation of every record

Every command takes --schemas-dir DIR (default: the package's own directory).
Exit status (the project's conventions, common.cli): 0 ok, 1 check failed or a definition is broken,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import EXIT_USAGE, Parser, command_prog, fail
from common.output import write_atomic

from .compat import RecordReport, check_record, check_schema_set, load_compat_config
from .errors import SchemaDefinitionError, UnknownRecord
from .registry import (
    PACKAGE_DIR,
    SchemaSet,
    load_schema_set,
    manifest_path,
    manifest_text,
    next_version_file,
    read_manifest,
    sha256_file,
)

PROG = "python -m schemas"


class _UsageError(Exception):
    """Bad arguments detected after parsing (unknown record, missing directory): exit 2."""


def _build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--schemas-dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"schema directory to work on (default: {PACKAGE_DIR})",
    )
    parser = Parser(
        prog=PROG,
        description="Avro schemas of the data loop: compatibility gate, releases, documentation.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "check",
        parents=[common],
        help="check every current definition against the released versions of its record",
        description="Check each current .avsc against every released version of its record, at the level "
        "configured in compat.yaml (FULL_TRANSITIVE by default: the current schema must read all "
        "old data, and every old release must read new data). Prints the record, the field and the "
        "rule of each incompatibility and exits 1 on any.",
    )
    p.add_argument("records", nargs="*", metavar="RECORD", help="records to check (default: all)")
    p.add_argument("--strict", action="store_true", help="treat warnings (fields without doc) as failures")

    p = sub.add_parser(
        "release",
        parents=[common],
        help="add the current definition of RECORD as its next released version",
        description="Run the check for RECORD, then copy its current .avsc to versions/<stem>/v<N+1>.avsc "
        "and list it in versions/manifest.json. Refuses if the check fails or if the current "
        "definition is identical (in Parsing Canonical Form) to the latest release.",
    )
    p.add_argument("record", metavar="RECORD", help="record name (Impression) or file stem (impression)")

    p = sub.add_parser(
        "docs",
        parents=[common],
        help="write Markdown documentation of every record",
        description="Write Markdown documentation of every record: fields, types, defaults, docs, "
        "fingerprints, released versions and compatibility level.",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (default: standard output)")
    return parser


def _load(args: argparse.Namespace) -> SchemaSet:
    root = getattr(args, "schemas_dir", None) or PACKAGE_DIR
    if not Path(root).is_dir():
        raise _UsageError(f"--schemas-dir {root}: no such directory")
    return load_schema_set(root)


def _print_report(report: RecordReport, current_fp: str) -> None:
    against = ", ".join(report.checked) if report.checked else "no released version"
    status = "ok  " if report.ok else "FAIL"
    print(f"{status}  {report.record:<16} {report.level:<20} vs {against}  (current {current_fp})")
    for issue in report.issues:
        print(f"      {issue}")


def cmd_check(args: argparse.Namespace) -> int:
    schema_set = _load(args)
    names = []
    for wanted in args.records:
        try:
            names.append(schema_set.resolve_name(wanted).name)
        except UnknownRecord as exc:
            raise _UsageError(str(exc)) from None
    reports = check_schema_set(schema_set, names or None)
    print(f"schemas check: {len(reports)} record(s) in {schema_set.root}")
    warnings = []
    for report in reports:
        _print_report(report, schema_set.record(report.record).current.fingerprint_hex)
        warnings.extend(report.warnings)
    for warning in warnings:
        print(f"warning: {warning}")
    failed = [r.record for r in reports if not r.ok]
    if failed:
        count = sum(len(r.issues) for r in reports)
        print(f"schemas check: FAILED: {count} incompatibilit{'y' if count == 1 else 'ies'} in "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    if warnings and args.strict:
        print(f"schemas check: FAILED: {len(warnings)} warning(s) with --strict", file=sys.stderr)
        return 1
    print("schemas check: ok")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    schema_set = _load(args)
    try:
        rec = schema_set.resolve_name(args.record)
    except UnknownRecord as exc:
        raise _UsageError(str(exc)) from None
    level = load_compat_config(schema_set.root, list(schema_set.records)).level(rec.name)
    report = check_record(rec, level)
    if not report.ok:
        _print_report(report, rec.current.fingerprint_hex)
        print(f"schemas release: {rec.name} not released: the check failed", file=sys.stderr)
        return 1
    latest = rec.latest
    if latest is not None and latest.fingerprint == rec.current.fingerprint:
        same_text = latest.path.read_bytes() == rec.current.path.read_bytes()
        print(
            f"schemas release: {rec.name} not released: {rec.current.path.name} is identical to the latest "
            f"release v{latest.version} (fingerprint {latest.fingerprint_hex})"
            + ("" if same_text else "; only docs, order of attributes or formatting differ, which are not part "
               "of a version"),
            file=sys.stderr,
        )
        return 1
    number, rel_file = next_version_file(rec)
    target = schema_set.root / "versions" / rel_file
    if target.exists():
        print(f"schemas release: {target} already exists but is not in the manifest; remove it first",
              file=sys.stderr)
        return 1
    manifest = read_manifest(schema_set.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, rec.current.path.read_bytes())
    manifest.setdefault(rec.name, []).append(
        {
            "version": number,
            "file": rel_file,
            "sha256": sha256_file(target),
            "fingerprint": rec.current.fingerprint_hex,
        }
    )
    try:
        write_atomic(manifest_path(schema_set.root), manifest_text(manifest))
        load_schema_set(schema_set.root)  # the result must load
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    print(f"released {rec.name} v{number} (fingerprint {rec.current.fingerprint_hex}) -> "
          f"{target.relative_to(schema_set.root)}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from .docs import render_markdown

    schema_set = _load(args)
    text = render_markdown(schema_set)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if not out.parent.is_dir():
        raise _UsageError(f"--out {out}: directory {out.parent} does not exist")
    write_atomic(out, text)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    commands = {"check": cmd_check, "release": cmd_release, "docs": cmd_docs}
    if args.command is None:
        parser.error("a command is required: check, release or docs")
    if args.command in ("check", "release"):
        try:
            import avro.compatibility  # noqa: F401
        except ImportError:
            print(f"{PROG} {args.command}: FAILED: the compatibility check needs the avro package "
                  "(pip install avro==1.12.2; it comes with the [jobs] and [trainer] extras)", file=sys.stderr)
            return 1
    try:
        return commands[args.command](args)
    except _UsageError as exc:
        return fail(command_prog(args, PROG), exc, EXIT_USAGE)
    except SchemaDefinitionError as exc:
        print(f"{PROG} {args.command}: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
