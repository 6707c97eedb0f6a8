"""``facegate``: the facegate API from a shell.

    facegate compare A.jpg B.jpg [--vendor V] [--fallback V,…] [--strategy S] [--level low|normal|high] [--json]
    facegate detect PHOTO | features PHOTO | verify-identity --name N --id-number X PHOTO
    facegate results ID | results delete ID | vendors | usage [--from D --to D]
    facegate batch run FOLDER | batch submit FOLDER --bucket B
    facegate secrets put VENDOR FILE [--stage dev]

The server is ``FACEGATE_URL`` (default http://127.0.0.1:3000, what ``make run``
serves), the key ``FACEGATE_API_KEY`` (default local-dev-key); ``--url`` and
``--api-key`` override both. A photo argument is a file (sent as base64), an
``http(s)://`` URL (facegate fetches it) or ``s3://bucket/key``.

Output is words by default; ``--json`` prints the API's answer exactly as it came
(on an API error too, on stdout, besides the one stderr line). Every failure is one
line on stderr and an exit code:

    0  done
    1  the API (or AWS) refused the request: ``error: CODE: message (request_id …)``;
       a batch that failed
    2  usage: a bad argument, a missing or unreadable file, invalid credentials
    3  the server cannot be reached (refused, unresolvable, timed out)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from facegate.models import VENDOR_IDS

OK, API_ERROR, USAGE, UNREACHABLE = 0, 1, 2, 3
PROG = "facegate"


class UsageError(Exception):
    """The command line or a file it names is wrong: exit 2."""


class CommandFailed(Exception):
    """Something outside the API refused (AWS) or a batch failed: exit 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: the hint says where the rest is.
        raise UsageError(f"{message} (see {self.prog} --help)")


# --- arguments -------------------------------------------------------------------------------------


def vendor_id(value: str) -> str:
    if value not in VENDOR_IDS:
        raise argparse.ArgumentTypeError(f"unknown vendor '{value}' (one of {', '.join(VENDOR_IDS)})")
    return value


def vendor_list(value: str) -> list[str]:
    return [vendor_id(v.strip()) for v in value.split(",") if v.strip()]


def date(value: str) -> str:
    from datetime import date as Date

    try:
        Date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date (YYYY-MM-DD)") from None
    if len(value) != 10:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date (YYYY-MM-DD)")
    return value


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--url", help="the API's base URL (default: $FACEGATE_URL or http://127.0.0.1:3000)")
    common.add_argument("--api-key", help="the x-api-key (default: $FACEGATE_API_KEY or local-dev-key)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer as it came")
    routing = Parser(add_help=False)
    routing.add_argument("--vendor", type=vendor_id, help=f"one of {', '.join(VENDOR_IDS)}")
    routing.add_argument("--fallback", type=vendor_list, default=[], help="vendors to try next, comma-separated")
    routing.add_argument(
        "--strategy",
        choices=("ordered", "cheapest", "fastest"),
        default="ordered",
        help="the order vendors are tried in: as stated, cheapest first, or fastest first",
    )
    level = Parser(add_help=False)
    level.add_argument("--level", choices=("low", "normal", "high"), default="normal", help="the security level")

    parser = Parser(prog=PROG, description="The facegate face verification API from a shell.", epilog=EXIT_CODES)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = commands.add_parser("compare", parents=[common, routing, level], help="are two faces the same person")
    p.add_argument("image1", metavar="A", help="a photo: a file, an http(s):// URL or s3://bucket/key")
    p.add_argument("image2", metavar="B", help="the other photo")
    p.set_defaults(run=cmd_compare)

    p = commands.add_parser("detect", parents=[common, routing], help="where are the faces in one photo")
    p.add_argument("image", metavar="PHOTO")
    p.set_defaults(run=cmd_detect)

    p = commands.add_parser("features", parents=[common, routing], help="the face embedding of one photo")
    p.add_argument("image", metavar="PHOTO")
    p.set_defaults(run=cmd_features)

    p = commands.add_parser(
        "verify-identity", parents=[common, routing, level], help="does a photo match an ID card holder"
    )
    p.add_argument("--name", required=True, help="the ID card holder's name")
    p.add_argument("--id-number", required=True, help="the 18-character ID number")
    p.add_argument("image", metavar="PHOTO")
    p.set_defaults(run=cmd_verify_identity)

    p = commands.add_parser(
        "results", parents=[common], help="an earlier call's logged outcome: results ID | results delete ID"
    )
    p.add_argument("words", nargs="+", metavar="ID | delete ID")
    p.set_defaults(run=cmd_results)

    p = commands.add_parser("vendors", parents=[common], help="vendors, whether each is configured, their health")
    p.set_defaults(run=cmd_vendors)

    p = commands.add_parser("usage", parents=[common], help="your calls per vendor and operation")
    p.add_argument("--from", dest="from_", type=date, metavar="YYYY-MM-DD")
    p.add_argument("--to", type=date, metavar="YYYY-MM-DD")
    p.set_defaults(run=cmd_usage)

    batch = commands.add_parser("batch", help="run a folder of requests: batch run | batch submit")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True, metavar="run|submit")
    p = batch_commands.add_parser(
        "run", help="locally, AWS emulated in-process (python -m facegate_local.batch with a progress bar)"
    )
    p.add_argument("folder", type=Path, metavar="FOLDER", help="one manifest (*.jsonl or *.csv) and its images")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, help="where the report goes (default FOLDER/results)")
    p.add_argument("--sandboxes", action="store_true", help="every vendor's loopback sandbox")
    p.add_argument("--stage", default=None)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(run=cmd_batch_run, json=False)
    p = batch_commands.add_parser("submit", parents=[common], help="upload to a deployed stack and follow it")
    p.add_argument("folder", type=Path, metavar="FOLDER", help="one manifest (*.jsonl or *.csv) and its images")
    p.add_argument("--bucket", required=True, help="the stack's BatchBucketName output")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.add_argument("--out", type=Path, help="where the report goes (default FOLDER/results)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between progress checks")
    p.add_argument("--timeout", type=float, default=3600.0, help="stop following after this many seconds")
    p.set_defaults(run=cmd_batch_submit)

    secrets = commands.add_parser("secrets", help="vendor credentials in Secrets Manager: secrets put")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True, metavar="put")
    p = secrets_commands.add_parser("put", help="validate a vendor's credentials JSON file and store it")
    p.add_argument("vendor", type=vendor_id, metavar="VENDOR")
    p.add_argument("file", type=Path, metavar="FILE", help="the vendor's secret as JSON (see README, Credentials)")
    p.add_argument("--stage", default="dev", help="the stack's stage (default dev)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.set_defaults(run=cmd_secrets_put, json=False)
    return parser


EXIT_CODES = "exit codes: 0 done, 1 the API refused (or a batch failed), 2 usage or a bad file, 3 server unreachable"


# --- the commands ----------------------------------------------------------------------------------


def client(args: argparse.Namespace):
    from facegate.client import Client

    return Client(url=args.url, api_key=args.api_key)


def emit(args: argparse.Namespace, answer, lines: Callable[[], list[str]]) -> int:
    if args.json:
        if answer.text:
            print(answer.text)
    else:
        print("\n".join(lines()))
    return OK


def cmd_compare(args: argparse.Namespace) -> int:
    from facegate.models import CompareResponse
    from facegate_cli import render

    with client(args) as c:
        request = c.compare_request(
            args.image1,
            args.image2,
            vendor=args.vendor,
            fallback=args.fallback,
            strategy=args.strategy,
            security_level=args.level,
        )
        answer = c.request("POST", "/v1/compare", body=request, idempotent=True)
    return emit(args, answer, lambda: render.compare(answer.parse(CompareResponse)))


def cmd_detect(args: argparse.Namespace) -> int:
    from facegate.models import DetectResponse
    from facegate_cli import render

    with client(args) as c:
        request = c.detect_request(args.image, vendor=args.vendor, fallback=args.fallback, strategy=args.strategy)
        answer = c.request("POST", "/v1/detect", body=request, idempotent=True)
    return emit(args, answer, lambda: render.detect(answer.parse(DetectResponse)))


def cmd_features(args: argparse.Namespace) -> int:
    from facegate.models import FeaturesResponse
    from facegate_cli import render

    with client(args) as c:
        request = c.features_request(args.image, vendor=args.vendor, fallback=args.fallback, strategy=args.strategy)
        answer = c.request("POST", "/v1/features", body=request, idempotent=True)
    return emit(args, answer, lambda: render.features(answer.parse(FeaturesResponse)))


def cmd_verify_identity(args: argparse.Namespace) -> int:
    from facegate.models import VerifyIdentityResponse
    from facegate_cli import render

    with client(args) as c:
        request = c.verify_identity_request(
            args.image,
            name=args.name,
            id_number=args.id_number,
            vendor=args.vendor,
            fallback=args.fallback,
            strategy=args.strategy,
            security_level=args.level,
        )
        answer = c.request("POST", "/v1/verify-identity", body=request, idempotent=True)
    return emit(args, answer, lambda: render.verify_identity(answer.parse(VerifyIdentityResponse)))


def cmd_results(args: argparse.Namespace) -> int:
    from facegate.client import path_segment
    from facegate_cli import render

    words = args.words
    if len(words) == 2 and words[0] == "delete":
        with client(args) as c:
            answer = c.request("DELETE", f"/v1/results/{path_segment(words[1])}")
        return emit(args, answer, lambda: [f"deleted {words[1]}"])
    if len(words) != 1:
        raise UsageError("results takes one request id, or: results delete ID")
    with client(args) as c:
        answer = c.request("GET", f"/v1/results/{path_segment(words[0])}")
    return emit(args, answer, lambda: render.record(answer.json()))


def cmd_vendors(args: argparse.Namespace) -> int:
    from facegate.models import VendorsResponse
    from facegate_cli import render

    with client(args) as c:
        answer = c.request("GET", "/v1/vendors")
    return emit(args, answer, lambda: render.vendors(answer.parse(VendorsResponse)))


def cmd_usage(args: argparse.Namespace) -> int:
    from facegate.client import usage_params
    from facegate.models import UsageResponse
    from facegate_cli import render

    with client(args) as c:
        answer = c.request("GET", "/v1/usage", params=usage_params(args.from_, args.to))
    return emit(args, answer, lambda: render.usage(answer.parse(UsageResponse)))


def cmd_batch_run(args: argparse.Namespace) -> int:
    from facegate_cli.batches import run_locally

    return run_locally(args)


def cmd_batch_submit(args: argparse.Namespace) -> int:
    from facegate_cli.batches import submit

    return submit(args, client(args))


def cmd_secrets_put(args: argparse.Namespace) -> int:
    from facegate_cli.secrets import put

    return put(args)


# --- one place for every failure -------------------------------------------------------------------


def fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}" if code == USAGE else message, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    from facegate.client import ApiError, ImageNotReadable, InvalidAnswer, Unreachable

    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        return fail(f"error: {e}", USAGE)
    except SystemExit as e:  # --help, --version: argparse has printed what was asked
        return e.code if isinstance(e.code, int) else OK
    try:
        return args.run(args)
    except UsageError as e:
        return fail(f"error: {e}", USAGE)
    except ImageNotReadable as e:
        return fail(f"error: {e}", USAGE)
    except ValidationError as e:
        return fail(f"error: {describe(e)}", USAGE)
    except ApiError as e:
        if getattr(args, "json", False) and e.body:
            print(e.body)
        rid = f" (request_id {e.request_id})" if e.request_id else ""
        return fail(f"error: {e.code}: {e.message}{rid}", API_ERROR)
    except InvalidAnswer as e:
        return fail(f"error: {e}", API_ERROR)
    except CommandFailed as e:
        return fail(f"error: {e}", API_ERROR)
    except Unreachable as e:
        return fail(f"error: {e} — is the server running? (FACEGATE_URL, --url)", UNREACHABLE)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def describe(error: Any) -> str:
    """A pydantic error without the values it was given (they may be images, names,
    ID numbers or secrets): where, and what kind of problem."""
    parts = []
    for e in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(p) for p in e["loc"]) or "request"
        parts.append(f"{where}: {e['type'].replace('_', ' ')}")
    return "invalid " + "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
