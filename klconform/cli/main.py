"""The `klconform` command: `run` the bundled suites, `check-spec` the claims and cases,
`case-from-example` a failing property example into YAML cases, `diff` two reports."""

import argparse
import os
import sys

from klconform import __version__, resources
from klconform.errors import KLConformError
from klconform.harness.options import add_cli_options, pytest_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="klconform",
        description="Conformance suite for KL-divergence implementations.")
    parser.add_argument("--version", action="version", version=f"klconform {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the conformance suites against an implementation")
    add_cli_options(run)
    run.add_argument("pytest_args", nargs=argparse.REMAINDER,
                     help="after --: extra pytest arguments (-k, -x, -n 2, test ids such as "
                          "'test_cases.py::test_case[ID]', ...)")

    check = commands.add_parser(
        "check-spec", help="validate the spec and the cases (yours with --cases DIR)")
    check.add_argument("--spec-dir", default=None)
    check.add_argument("--cases", default=None,
                       help="your case files: checked against the spec and, for unique ids, "
                            "against the bundled cases; claim coverage is not demanded")
    check.add_argument("--only-cases", default=None,
                       help="a complete replacement for the bundled cases: checked like them, "
                            "every claim must have a case")

    found = commands.add_parser(
        "case-from-example", help="turn a failing property example (JSON) into YAML cases")
    found.add_argument("example", help="the example file a failing property wrote "
                                       "(reports/<impl>/examples/*.json), or - for stdin")
    found.add_argument("-o", "--output", default=None,
                       help="write the case file here (default: print it); must not exist")

    matrix = commands.add_parser(
        "matrix", help="merge report.json files into matrix.json, matrix.md and index.html")
    matrix.add_argument("reports", nargs="*", help="report.json files, one per implementation")
    matrix.add_argument("--from-matrix", default=None, metavar="MATRIX_JSON",
                        help="instead of reports: re-render matrix.md and index.html from a "
                             "saved matrix.json (which is left as it is)")
    matrix.add_argument("--out", required=True,
                        help="directory for matrix.json, matrix.md and index.html")

    rebuild = commands.add_parser(
        "report", help="rebuild the reports (report.json, report.md, report-full.md, "
                       "junit.xml) from a saved run stream")
    rebuild.add_argument("stream", help="a run stream (run.jsonl) or the report dir holding it")
    rebuild.add_argument("--out", required=True, help="directory for the rebuilt reports")

    diff = commands.add_parser(
        "diff", help="compare two report.json files: regressions, fixes, newly unsupported; "
                     "exit 1 on a must-level regression or a must-level claim no longer "
                     "checked")
    diff.add_argument("old", help="the baseline report.json (e.g. the base branch's)")
    diff.add_argument("new", help="the report.json to judge")
    diff.add_argument("--format", choices=("text", "markdown"), default="text",
                      help="markdown: for a pull request comment or $GITHUB_STEP_SUMMARY")
    diff.add_argument("--allow-coverage-drop", action="store_true",
                      help="list must-level claims checked in OLD and not in NEW without "
                           "failing (by default such a coverage regression exits 1)")

    infer = commands.add_parser(
        "diagnose", help="infer an unknown KL function's convention by probing it; "
                         "--write its record for run --convention")
    infer.add_argument("--impl", required=True,
                       help="MODULE:ATTR of the function, or of a loss class (built with "
                            "the reduction, then called on the two arrays)")
    infer.add_argument("--device", default="cpu",
                       help="where the probe arrays are made (cpu, cuda, ...); default cpu")
    infer.add_argument("--write", default=None, help="write the inferred record here")
    infer.add_argument("--assume", action="append", default=[], metavar="KEY=VALUE",
                       help="settle what the probes leave ambiguous, or state what you "
                            "meant: prediction=SPACE, target=SPACE (probabilities, "
                            "log-probabilities, logits), first=prediction|target, "
                            "axis=-1|1, scaled=yes|no (T**2), output=MEANING")
    infer.add_argument("--call", action="append", default=[], metavar="NAME=VALUE",
                       help="a keyword passed on every call (a YAML scalar: beta=0.0); "
                            "required keywords klconform cannot choose are asked for this "
                            "way, and the record keeps them as its `call:`")

    args = parser.parse_args(argv)
    handlers = {"run": run_suites, "case-from-example": run_case_from_example,
                "check-spec": run_check_spec, "diff": run_diff, "matrix": run_matrix,
                "report": run_report, "diagnose": run_diagnose}
    return handlers[args.command](args)


def run_diff(args):
    import json

    from klconform.report.diff import ReportError, compare, render_markdown, render_text

    reports = []
    for path in (args.old, args.new):
        try:
            with open(path, encoding="utf-8") as handle:
                reports.append(json.load(handle))
        except (OSError, UnicodeDecodeError) as error:
            print(f"diff: cannot read {path}: {error}", file=sys.stderr)
            return 2
        except json.JSONDecodeError as error:
            print(f"diff: {path} is not JSON: {error}", file=sys.stderr)
            return 2
    old, new = reports
    try:
        result = compare(old, new, args.old, args.new,
                         allow_coverage_drop=args.allow_coverage_drop)
    except ReportError as error:
        print(f"diff: {error}", file=sys.stderr)
        return 2
    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(result, old, new))
    return result.exit_status


def run_report(args):
    from klconform.harness.run_stream import read_stream
    from klconform.report.build import write_reports

    events = read_stream(args.stream)
    if not events:
        print(f"report: {args.stream}: no run stream there (run.jsonl)", file=sys.stderr)
        return 2
    try:
        written = write_reports(events, args.out)
    except KLConformError as error:   # a stream this version cannot read
        print(f"report: {args.stream}: {error}", file=sys.stderr)
        return 2
    print(f"report: {written.verdict.upper()}; {written.json}")
    return 0


def run_matrix(args):
    from klconform.report.matrix import MatrixError, read_matrix
    from klconform.report.matrix_files import render_pages, write_matrix

    if bool(args.reports) == bool(args.from_matrix):
        print("matrix: give report.json files or --from-matrix MATRIX_JSON (one of the two)",
              file=sys.stderr)
        return 2
    try:
        if args.from_matrix:
            matrix = read_matrix(args.from_matrix)
            render_pages(matrix, args.out)
        else:
            matrix = write_matrix(args.reports, args.out)
    except MatrixError as error:
        print(f"matrix: {error}", file=sys.stderr)
        return 2
    print(f"matrix: {len(matrix['implementations'])} implementations -> "
          f"{os.path.join(args.out, 'matrix.md')}")
    return 0


def run_case_from_example(args):
    from klconform.authoring.case_from_example import ExampleError, case_file_text, read_example

    try:
        with (sys.stdin if args.example == "-" else open(args.example, encoding="utf-8")) as f:
            text = case_file_text(read_example(f.read()))
    except (OSError, ExampleError) as error:
        print(f"case-from-example: {error}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        print(f"case-from-example: {error}", file=sys.stderr)
        return 1
    print(f"case-from-example: wrote {args.output}; run klconform check-spec")
    return 0


def run_suites(args):
    import shutil
    import tempfile

    from klconform.harness.child_runner import run_surviving_crashes
    from klconform.harness.options import default_report_dir

    extra = list(args.pytest_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.kl_min_coverage:
        from klconform.report.gate import impossible, spec_claims
        from klconform.spec.claims import load_spec

        # In this command's own spelling; the child pytest would name --kl-min-coverage.
        problem = impossible(args.kl_min_coverage, spec_claims(load_spec().claims.values()))
        if problem:
            print(f"klconform run: {problem}", file=sys.stderr)
            return 4
    args.report_dir = args.report_dir or default_report_dir(os.getcwd(), args.impl)
    suites = str(resources.suites_dir())
    pytest_args = [
        # The bundled suites carry their own configuration: a user's pytest.ini or
        # pyproject settings in the current directory must not change a conformance run.
        "-c", os.devnull, "--rootdir", suites, "-p", "no:cacheprovider", "--kl-only",
        f"--impl={args.impl}",
        *pytest_arguments({k: v for k, v in vars(args).items() if k != "impl"}), "-ra", "-q",
    ]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        pytest_args += ["-p", "klconform.harness.plugin"]
    if any(argument.startswith(("-n", "--numprocesses")) for argument in extra):
        print("klconform run: workers as given after --", file=sys.stderr)
    else:
        pytest_args.append("--kl-workers=auto")   # chosen and said there (harness.workers)
    # Hypothesis keeps a cache in ./.hypothesis; the child puts it here, and it goes.
    hypothesis_home = tempfile.mkdtemp(prefix="klconform-hypothesis-")
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = hypothesis_home
    try:
        return run_surviving_crashes(pytest_args + extra, args.report_dir)
    finally:
        shutil.rmtree(hypothesis_home, ignore_errors=True)


def run_diagnose(args):
    from klconform.authoring.diagnose import diagnose_command

    return diagnose_command(args.impl, args.write, args.assume, device=args.device,
                            call_pairs=args.call)


def _absolute(path):
    return os.path.abspath(path) if path else None


def run_check_spec(args):
    from klconform.authoring.lint import check_spec

    problems, counts = check_spec(args.spec_dir, _absolute(args.only_cases),
                                  extra_dir=_absolute(args.cases))
    for problem in problems:
        print(f"check-spec: {problem}", file=sys.stderr)
    if problems:
        print(f"check-spec: FAILED with {len(problems)} problem(s)", file=sys.stderr)
        return 1
    if args.cases:
        print(f"check-spec: ok: {counts['cases']} of your cases in {counts['files']} files "
              f"({args.cases}), {counts['published']} published numbers reproduced")
    else:
        print(f"check-spec: ok: {counts['claims']} claims, {counts['cases']} cases in "
              f"{counts['files']} files, {counts['published']} published numbers reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
