"""The `klconform` command: `run` the bundled suites, `check-spec` the claims and cases,
`case-from-example` a failing property example into YAML cases."""

import argparse
import os
import sys

from klconform import __version__, resources


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="klconform",
        description="Conformance suite for KL-divergence implementations.")
    parser.add_argument("--version", action="version", version=f"klconform {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the conformance suites against an implementation")
    run.add_argument("--impl", default="torch",
                     help="torch (default), torch-module, numpy, an entry point name, "
                          "MODULE:ATTR or MODULE")
    run.add_argument("--report-dir", default=None,
                     help="where report.json and report.md go (default: ./reports/<impl>/)")
    run.add_argument("--strict", action="store_true",
                     help="should-level failures (and stale known deviations) fail the run")
    run.add_argument("--device", default="cpu", help="device for adapters that have devices")
    run.add_argument("--profile", default="default", choices=("default", "thorough"))
    run.add_argument("--cases", default=None, help="directory of case files to use instead")
    run.add_argument("--xfails", default=None,
                     help="YAML manifest of known deviations (case or claim id -> reason)")
    run.add_argument("--seed", type=int, default=None,
                     help="seed for the property layer (thorough profile)")
    run.add_argument("--max-examples", type=int, default=None,
                     help="examples per property")
    run.add_argument("--convention", default=None,
                     help="implementation record (YAML, spec/implementation.schema.json) "
                          "saying how the --impl MODULE:ATTR function is called")
    run.add_argument("--timeout", type=float, default=60.0,
                     help="seconds one implementation call may take (0: no limit)")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER,
                     help="after --: extra pytest arguments (-k, -x, -n 2, ...)")

    check = commands.add_parser("check-spec", help="validate the spec and the cases")
    check.add_argument("--spec-dir", default=None)
    check.add_argument("--cases", default=None)

    found = commands.add_parser(
        "case-from-example", help="turn a failing property example (JSON) into YAML cases")
    found.add_argument("example", help="the example file a failing property wrote "
                                       "(reports/<impl>/examples/*.json), or - for stdin")
    found.add_argument("-o", "--output", default=None,
                       help="write the case file here (default: print it); must not exist")

    matrix = commands.add_parser(
        "matrix", help="merge report.json files into matrix.json and matrix.md")
    matrix.add_argument("reports", nargs="+", help="report.json files, one per implementation")
    matrix.add_argument("--out", required=True, help="directory for matrix.json and matrix.md")

    rebuild = commands.add_parser(
        "report", help="rebuild report.json and report.md from a saved run stream")
    rebuild.add_argument("stream", help="a run stream (run.jsonl) or the report dir holding it")
    rebuild.add_argument("--out", required=True, help="directory for report.json and report.md")

    args = parser.parse_args(argv)
    if args.command == "report":
        return run_report(args)
    if args.command == "run":
        return run_suites(args)
    if args.command == "matrix":
        return run_matrix(args)
    if args.command == "case-from-example":
        return run_case_from_example(args)
    return run_check_spec(args)


def run_report(args):
    from klconform.harness.run_stream import read_stream
    from klconform.report.build import write_reports

    events = read_stream(args.stream)
    if not events:
        print(f"report: {args.stream}: no run stream there (run.jsonl)", file=sys.stderr)
        return 2
    paths = write_reports(events, args.out)
    print(f"report: {paths[2].upper()}; {paths[0]}")
    return 0


def run_matrix(args):
    from klconform.report.matrix import MatrixError, write_matrix

    try:
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
        with open(args.output, "x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        print(f"case-from-example: {error}", file=sys.stderr)
        return 1
    print(f"case-from-example: wrote {args.output}; run klconform check-spec")
    return 0


def run_suites(args):
    from klconform.harness.child_runner import run_isolated

    extra = list(args.pytest_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    from klconform.harness.session import default_report_dir

    report_dir = args.report_dir or default_report_dir(os.getcwd(), args.impl)
    suites = str(resources.suites_dir())
    pytest_args = [
        suites,
        # The bundled suites carry their own configuration: a user's pytest.ini or
        # pyproject settings in the current directory must not change a conformance run.
        "-c", os.devnull, "--rootdir", suites, "-p", "no:cacheprovider",
        f"--impl={args.impl}", f"--report-dir={report_dir}", f"--kl-device={args.device}",
        f"--kl-profile={args.profile}", "-ra", "-q",
    ]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        pytest_args += ["-p", "klconform.harness.plugin"]
    if args.strict:
        pytest_args.append("--kl-strict")
    if args.cases:
        pytest_args.append(f"--kl-cases={os.path.abspath(args.cases)}")
    if args.xfails:
        pytest_args.append(f"--kl-xfails={os.path.abspath(args.xfails)}")
    if args.seed is not None:
        pytest_args.append(f"--kl-seed={args.seed}")
    if args.max_examples is not None:
        pytest_args.append(f"--kl-max-examples={args.max_examples}")
    pytest_args.append(f"--kl-timeout={args.timeout}")
    if args.convention:
        pytest_args.append(f"--kl-convention={os.path.abspath(args.convention)}")
    return run_isolated(pytest_args + extra, report_dir)


def run_check_spec(args):
    from klconform.authoring.lint import check_spec

    cases_dir = os.path.abspath(args.cases) if args.cases else None
    problems, counts = check_spec(args.spec_dir, cases_dir)
    for problem in problems:
        print(f"check-spec: {problem}", file=sys.stderr)
    if problems:
        print(f"check-spec: FAILED with {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-spec: ok: {counts['claims']} claims, {counts['cases']} cases in "
          f"{counts['files']} files, {counts['published']} published numbers reproduced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
