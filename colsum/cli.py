"""`colsum`: the command-line client of a Colsum service.

    colsum submit sample.csv --wait          # a path below the executors' DATA_DIR
    colsum submit s3://bucket/key.csv        # an S3 object
    colsum submit ./local.csv --upload       # a file of yours, uploaded
    colsum status ID | list | active | cancel ID
    colsum client create NAME [--weight N] | list | revoke NAME | token NAME   # admin token

With a token (COLSUM_TOKEN or --token) every request carries `Authorization: Bearer`.

Exit codes for scripts: 0 done (or the request succeeded), 1 the task failed or was
cancelled, 2 the request was refused (4xx), 3 the service is unreachable or broken (5xx),
130 interrupted by Ctrl-C (a task already submitted goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from colsum import jsoncodec

DONE, FAILED, REFUSED, UNAVAILABLE = 0, 1, 2, 3
INTERRUPTED = 130  # Ctrl-C, as shells count it


class ServiceError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=70, **kwargs)
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as error:
            message = f"--url {self.url!r} is not an http:// or https:// URL"
            raise ServiceError(message, REFUSED) from error
        except requests.RequestException as error:
            raise ServiceError(f"cannot reach {self.url}: {error}", UNAVAILABLE) from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError):
                message = response.text[:200]
            code = REFUSED if response.status_code < 500 else UNAVAILABLE
            raise ServiceError(f"{response.status_code}: {message}", code)
        try:
            return jsoncodec.loads(response.text)  # sums are exact decimals: keep every digit
        except ValueError:
            message = f"{self.url} answered {method} {path} with something that is not JSON"
            raise ServiceError(f"{message}: is --url a Colsum service?", UNAVAILABLE) from None


def source_of(target: str) -> dict[str, str]:
    if target.startswith("s3://"):
        bucket, _, key = target[5:].partition("/")
        return {"storage": "s3", "bucket": bucket, "key": key}
    return {"storage": "local", "path": target}


# Delimiters that are hard to type on a command line (or to quote), by name.
DELIMITERS = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def submit(client: Client, args: argparse.Namespace) -> dict:
    options: dict[str, Any] = {}
    if args.header is not None:
        options["header"] = args.header
    if args.delimiter:
        options["delimiter"] = DELIMITERS.get(args.delimiter.lower(), args.delimiter)
    if args.op:
        options["op"] = args.op
    if args.upload:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()}
        query["filename"] = Path(args.target).name
        headers = {"Content-Type": "text/csv"}
        try:
            with Path(args.target).open("rb") as body:
                return client.call("POST", "/tasks", data=body, headers=headers, params=query)
        except OSError as error:  # the file; the service's errors arrive as ServiceError
            raise ServiceError(f"cannot read {args.target}: {error.strerror}", REFUSED) from None
    return client.call("POST", "/tasks", json={**source_of(args.target), **options})


POLL = 1  # seconds each long poll of `--wait` may last


def wait(client: Client, task: dict, quiet: bool) -> dict:
    """Follow a task to its end, with a progress bar on a terminal."""
    bar = tqdm(
        total=100,
        desc=task["status"],
        disable=quiet or None,
        file=sys.stderr,
        leave=False,
        bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
    )
    with bar:
        while task["status"] in ("queued", "running"):
            asked = time.monotonic()
            task = client.call("GET", f"/tasks/{task['id']}", params={"wait": POLL})
            early = POLL - (time.monotonic() - asked)
            if task["status"] in ("queued", "running") and early > 0:
                # Answered before the wait was up though the task goes on: every long-poll
                # slot of the backend is taken (it says Retry-After), so ask again later.
                time.sleep(early)
            done = round(float(task.get("progress") or 0) * 100)
            bar.set_description(task["status"], refresh=False)
            if task.get("bytes_total"):
                bar.set_postfix_str(read_so_far(task), refresh=False)
            bar.update(done - bar.n)
    return task


def read_so_far(task: dict) -> str:
    read, total = (task.get("bytes_read") or 0) / 1e6, task["bytes_total"] / 1e6
    return f"{read:,.0f}/{total:,.0f} MB, {task.get('rows_read') or 0:,} rows"


def show(task: dict, as_json: bool) -> None:
    if as_json:
        print(jsoncodec.dumps(task))
        return
    source = task["source"]
    where = source.get("path") or f"s3://{source['bucket']}/{source['key']}"
    if source.get("filename"):
        where += f" ({source['filename']})"
    print(f"{task['id']}  {task['status']}  {where}")
    if task.get("error"):
        print(f"error: {task['error']}")
    if task["status"] == "running" and task.get("bytes_total"):
        print(f"progress: {float(task.get('progress') or 0):.0%} ({read_so_far(task)})")
    result = task.get("result")
    if result:
        if "even_count" in result:  # sum_even
            print(f"integers: {result['count']}, even: {result['even_count']}")
        else:
            print(f"rows: {result['rows']}")
        if task.get("run_seconds") is not None:
            speed = f" ({task['mb_per_second']} MB/s)" if task.get("mb_per_second") else ""
            print(f"time: {task['run_seconds']} s{speed}")
        if "even_count" in result:
            print(f"  sum of the even ones: {result['sum']}")
        for column in result.get("columns", []):
            print(f"  column {column['column']:>4}  {column['name'] or '':<20} {column['sum']}")


def next_page(args: argparse.Namespace, cursor: str, default_url: str) -> str:
    """The command that lists the next page of the same listing, from the same service."""
    status = f" --status {shlex.quote(args.status)}" if args.status else ""
    url = f" --url {shlex.quote(args.url)}" if args.url != default_url else ""
    return f"colsum list{status} --limit {args.limit} --cursor {cursor}{url}"


def manage_clients(client: Client, args: argparse.Namespace) -> int:
    """`colsum client ...`: the admin's commands, over the API with the admin token."""
    if args.action == "create":
        body = {"name": args.name, "weight": args.weight}
        shown = client.call("POST", "/clients", json=body)
    elif args.action == "token":
        shown = client.call("POST", f"/clients/{args.name}/tokens")
    elif args.action == "revoke":
        shown = client.call("DELETE", f"/clients/{args.name}")
    else:
        shown = client.call("GET", "/clients")
    if args.json:
        print(jsoncodec.dumps(shown))
    elif "token" in shown:
        print(shown["token"])
        print(
            f"colsum: the token of {shown['client']}, shown this once: give it to them "
            "(COLSUM_TOKEN, or 'Authorization: Bearer <token>')",
            file=sys.stderr,
        )
    elif "revoked_tokens" in shown:
        print(f"{shown['client']}: {shown['revoked_tokens']} token(s) revoked")
    else:
        for entry in shown["clients"]:
            state = "revoked" if not entry["tokens"] else f"{entry['tokens']} token(s)"
            print(
                f"{entry['client']}  weight {entry['weight']}  {state}  "
                f"active {entry['active']}  queued {entry['queued']}  running {entry['running']}"
            )
        if not shown["clients"]:
            print("no clients", file=sys.stderr)
    return DONE


def exit_code(task: dict) -> int:
    return DONE if task["status"] in ("done", "queued", "running") else FAILED


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:  # `colsum list | head`: the reader has what it wanted
        # Python's own advice: stdout to devnull, so that its flush at exit is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return DONE


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="colsum", description=__doc__.splitlines()[0])
    url = os.environ.get("COLSUM_URL", "http://127.0.0.1:8000")
    parser.add_argument("--url", default=url, help=f"the service (COLSUM_URL; now {url})")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    token = os.environ.get("COLSUM_TOKEN")
    parser.add_argument("--token", default=token, help="the API token (COLSUM_TOKEN)")
    # The same options after the command too (`colsum list --json`); SUPPRESS keeps an
    # option given before the command when it is not repeated after it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")
    common.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common])

    sub = command("submit", "create a task")
    sub.add_argument(
        "target", help="a path below DATA_DIR, s3://bucket/key, or with --upload a file"
    )
    sub.add_argument("--upload", action="store_true", help="send the local file itself")
    sub.add_argument("--wait", action="store_true", help="follow the task to its end")
    sub.add_argument("--header", action=argparse.BooleanOptionalAction, default=None)
    sub.add_argument("--delimiter", help="one character, or tab ('\\t'), comma, semicolon, pipe")
    sub.add_argument(
        "--op",
        choices=["sum_columns", "sum_even"],
        help="sum_columns (the default): every 10th column of a CSV; sum_even: the even "
        "integers of a text file",
    )
    command("status", "show a task").add_argument("id")
    listing = command("list", "the newest tasks")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor", help="the next page, as the previous one said")
    command("active", "count the tasks in work")
    command("cancel", "cancel a task").add_argument("id")
    clients = command("client", "manage clients and their tokens (the admin token)")
    actions = clients.add_subparsers(dest="action", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, parents=[common])

    create = action("create", "register a client; prints its token")
    create.add_argument("name")
    create.add_argument("--weight", type=int, default=1, help="its share of the executors")
    action("list", "the clients, with their task counts")
    action("revoke", "revoke every token of a client").add_argument("name")
    action("token", "issue a client another token").add_argument("name")
    args = parser.parse_args(argv)

    client = Client(args.url, args.token)
    try:
        if args.command == "submit":
            task = submit(client, args)
            if args.wait:
                try:
                    task = wait(client, task, quiet=args.json)
                except KeyboardInterrupt:
                    print(
                        f"colsum: stopped waiting; task {task['id']} goes on "
                        f"(colsum status {task['id']}, or colsum cancel {task['id']})",
                        file=sys.stderr,
                    )
                    return INTERRUPTED
            show(task, args.json)
            return exit_code(task)
        if args.command == "status":
            task = client.call("GET", f"/tasks/{args.id}")
            show(task, args.json)
            return exit_code(task)
        if args.command == "cancel":
            show(client.call("DELETE", f"/tasks/{args.id}"), args.json)
            return DONE
        if args.command == "client":
            return manage_clients(client, args)
        if args.command == "active":
            counts = client.call("GET", "/tasks/active")
            if args.json:
                print(json.dumps(counts))
            else:
                every = counts.pop("all", None)  # the admin's: every client's tasks
                print("  ".join(f"{k} {v}" for k, v in counts.items()))
                if every is not None:
                    print("all clients: " + "  ".join(f"{k} {v}" for k, v in every.items()))
            return DONE
        params = {"limit": args.limit, "status": args.status, "cursor": args.cursor}
        page = client.call("GET", "/tasks", params={k: v for k, v in params.items() if v})
        if args.json:
            print(jsoncodec.dumps(page))
            return DONE
        for task in page["tasks"]:
            show({**task, "result": None, "error": None}, False)
        if not page["tasks"]:
            print("no tasks", file=sys.stderr)
        if page["next_cursor"]:
            print(f"more: {next_page(args, page['next_cursor'], url)}", file=sys.stderr)
        return DONE
    except ServiceError as error:
        print(f"colsum: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:  # an upload cut off this way is not kept by the service
        print("colsum: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
