"""The ``spectral-topics`` command.

    spectral-topics serve  [--host --port]     API + one worker on embedded defaults
    spectral-topics api    [--host --port]     API only (runs migrations); for containers
    spectral-topics worker [--queues --pool --concurrency]
    spectral-topics migrate
    spectral-topics keys create --tenant T | keys list [--tenant T] | keys revoke KEY_ID
    spectral-topics submit FILE --topics K [--wait]  (client of a running API, --url)
    spectral-topics topics MODEL | infer MODEL FILE [--json] | export MODEL [-o FILE] [--format] | job JOB
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectral-topics", description="Spectral LDA topic modeling service.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (("serve", "run the API and a worker on embedded defaults (stops both on exit)"),
                            ("api", "run the API only (migrates the database first)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--data-dir", help="overrides DATA_DIR")

    p = sub.add_parser("worker", help="run a Celery worker")
    p.add_argument("--queues", help="comma-separated queues (default WORKER_QUEUES, 'gpu,cpu')")
    p.add_argument("--pool", choices=["prefork", "solo", "threads"], help="solo for a GPU worker")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--data-dir", help="overrides DATA_DIR")
    p.add_argument("--nice", type=int, default=0, choices=range(0, 20), metavar="0..19",
                   help="lower this worker's CPU priority (serve does with EMBEDDED_WORKER_NICE when "
                        "EMBEDDED_WORKER_SCHED_IDLE is off)")
    p.add_argument("--idle-priority", action="store_true",
                   help="run at idle CPU priority: SCHED_IDLE on Linux, else nice 19 (serve's worker, by default)")

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.add_argument("--data-dir", help="overrides DATA_DIR")

    keys = sub.add_parser("keys", help="create, list and revoke API keys (directly in the database)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    p = keys_sub.add_parser("create", help="create a key for a tenant; prints the key once")
    p.add_argument("--tenant", required=True)
    p.add_argument("--data-dir", help="overrides DATA_DIR")
    p = keys_sub.add_parser("list", help="list keys (ids, tenants, dates; never secrets)")
    p.add_argument("--tenant")
    p.add_argument("--data-dir", help="overrides DATA_DIR")
    p = keys_sub.add_parser("revoke", help="revoke a key by its id")
    p.add_argument("key_id")
    p.add_argument("--data-dir", help="overrides DATA_DIR")

    def client_args(p):
        p.add_argument("--url", default=os.environ.get("SPECTRAL_TOPICS_URL", DEFAULT_URL), help="API base URL")
        p.add_argument("--api-key", default=os.environ.get("SPECTRAL_TOPICS_API_KEY"),
                       help="API key sent as a bearer token (default SPECTRAL_TOPICS_API_KEY)")

    p = sub.add_parser("submit", help="upload a corpus file and fit a model")
    p.add_argument("file", type=Path)
    p.add_argument("--topics", required=True, help="number of topics, or 'auto'")
    p.add_argument("--alpha0", default="1.0", help="Dirichlet concentration, or 'auto'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", help="input format (detected from the file name when omitted)")
    p.add_argument("--text-options", help="TextOptions as JSON, e.g. '{\"min_df\": 2}'")
    p.add_argument("--wait", action="store_true", help="show progress until done, then the topics")
    p.add_argument("--top-n", type=int, default=10)
    client_args(p)

    p = sub.add_parser("topics", help="print a model's topics as a table")
    p.add_argument("model")
    p.add_argument("--top-n", type=int, default=10)
    client_args(p)

    p = sub.add_parser("infer", help="topic mixtures of new texts (JSON list or one text per line), as a table")
    p.add_argument("model")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    client_args(p)

    p = sub.add_parser("export", help="download the model: CSV files in a zip, a NumPy .npz, or pyLDAvis JSON")
    p.add_argument("model")
    p.add_argument("-o", "--output", type=Path, help="file to write (default model-MODEL.zip|.npz|.json)")
    p.add_argument("--format", choices=["zip", "npz", "pyldavis"], default="zip")
    p.add_argument("--top-n", type=int, help="terms per topic in topic-terms.csv (default 100)")
    client_args(p)

    p = sub.add_parser("job", help="show a job")
    p.add_argument("job")
    client_args(p)
    return parser


def _settings(args):
    from app.core.settings import get_settings

    overrides = {"data_dir": Path(args.data_dir)} if getattr(args, "data_dir", None) else {}
    return get_settings(**overrides)


def _migrate(settings) -> None:
    from app.core.context import build_context
    from app.migrations import upgrade_database

    ctx = build_context(settings)
    try:
        upgrade_database(ctx.engine)
    finally:
        ctx.close()


def _check_bind(settings, host: str) -> bool:
    """False (after saying why) if the API must not start on ``host`` with these settings."""
    from app.core.security import check_bind

    try:
        warning = check_bind(host, settings.require_api_keys)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    return True


def _keys(args) -> int:
    from app.core.context import build_context
    from app.core.db import transaction
    from app.core.security import create_api_key, list_api_keys, revoke_api_key

    settings = _settings(args)
    _migrate(settings)
    ctx = build_context(settings)
    try:
        with transaction(ctx.sessions) as session:
            if args.keys_command == "create":
                key = create_api_key(session, args.tenant)
            elif args.keys_command == "revoke":
                row = revoke_api_key(session, args.key_id)
                revoked = (row.id, row.tenant_id, row.revoked_at)
            else:
                rows = [(r.id, r.tenant_id, r.created_at, r.revoked_at) for r in list_api_keys(session, args.tenant)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        ctx.close()
    if args.keys_command == "create":
        print(f"key {key.key_id} for tenant {key.tenant_id}; the key below is shown only once:", file=sys.stderr)
        print(key.token)
    elif args.keys_command == "revoke":
        print(f"revoked {revoked[0]} (tenant {revoked[1]}) at {revoked[2].isoformat()}")
    else:
        print(f"{'key_id':<16}  {'tenant':<20}  {'created_at':<32}  revoked_at")
        for key_id, tenant, created, revoked_at in rows:
            print(f"{key_id:<16}  {tenant:<20}  {created.isoformat():<32}  {revoked_at.isoformat() if revoked_at else '-'}")
    return 0


def _run_api(settings, host: str, port: int, on_exit_signal=None) -> None:
    """Serve the API until SIGTERM / SIGINT; ``on_exit_signal()`` runs as soon as one
    arrives (before uvicorn drains its open requests), e.g. to stop serve's worker meanwhile."""
    import uvicorn

    from app.api.server_options import uvicorn_options
    from app.main import create_app

    app = create_app(settings)
    # Everything imported and built so far lives as long as the process: move it out of the
    # cyclic collector's reach, so a full collection walks only what requests allocate
    # (on the 2-core dev box a full collection over the ~200k startup objects paused the
    # event loop for 75-100 ms, a p99 spike at a few hundred requests per second).
    gc.freeze()
    options = dict(host=host, port=port, log_level="info", **uvicorn_options(settings))
    if on_exit_signal is None:
        uvicorn.run(app, **options)
        return
    server = uvicorn.Server(uvicorn.Config(app, **options))
    handle_exit = server.handle_exit

    def exit_signal(sig, frame) -> None:
        on_exit_signal()
        handle_exit(sig, frame)

    server.handle_exit = exit_signal  # uvicorn installs self.handle_exit for SIGTERM and SIGINT
    server.run()
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: the server could not start (e.g. the port is taken)


def embedded_worker_command(settings) -> list[str]:
    """The worker command that ``serve`` supervises: at idle CPU priority
    (EMBEDDED_WORKER_SCHED_IDLE, the default) or at niceness EMBEDDED_WORKER_NICE, so that
    fits and ingestions never starve the API in the same machine."""
    priority = ["--idle-priority"] if settings.embedded_worker_sched_idle else ["--nice",
                                                                               str(settings.embedded_worker_nice)]
    return [sys.executable, "-m", "app.cli", "worker", *priority]


def _serve(args) -> int:
    """API in this process, a supervised worker in a child process (restarted with backoff
    when it dies); both stop together."""
    from app.core.broker import make_celery, prepare_broker
    from app.serve_supervisor import WorkerSupervisor

    settings = _settings(args)
    if not _check_bind(settings, args.host):
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _migrate(settings)
    prepare_broker(make_celery(settings))
    env = dict(os.environ, DATA_DIR=str(settings.data_dir.resolve()))
    worker = WorkerSupervisor(embedded_worker_command(settings), env,
                              stop_timeout_s=settings.worker_shutdown_timeout_s + 10)
    worker.start()
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers that
    # re-raise is harmless, so the worker below is always stopped too.
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stop_signals}
    try:  # the worker stops while the API drains its open requests, not after
        _run_api(settings, args.host, args.port, on_exit_signal=worker.request_stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.stop()
    return 0


def _worker(args) -> int:
    # SIGTERM must stop the worker within seconds: Celery's warm shutdown waits for running
    # jobs however long they take, so SIGTERM is remapped to its cold shutdown, which first
    # lets running jobs go on for WORKER_SHUTDOWN_TIMEOUT_S (soft shutdown), then cancels
    # them; their messages go back to the broker and the lease reaper retries the jobs.
    # billiard reads this variable when it is first imported, i.e. below.
    os.environ.setdefault("REMAP_SIGTERM", "SIGQUIT")
    from workers.runner import run_worker

    if args.idle_priority:  # inherited by the pool's children, like the niceness
        from app.cpu_priority import lower_to_idle_priority

        print(f"worker CPU priority: {lower_to_idle_priority()}", file=sys.stderr, flush=True)
    elif args.nice:
        os.nice(args.nice)
    settings = _settings(args)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    run_worker(settings, queues=queues, pool=args.pool, concurrency=args.concurrency, loglevel=args.loglevel)
    return 0


def _number_or_auto(value: str, cast):
    return value if value == "auto" else cast(value)


def _client_command(args) -> int:
    import httpx

    from app.client import Client, ClientError, mixtures_table, print_json, read_texts, topics_table

    client = Client(args.url, api_key=args.api_key)
    try:
        if args.command == "submit":
            options = json.loads(args.text_options) if args.text_options else None
            corpus = client.upload(args.file, fmt=args.format, options=options)
            if "job" in corpus:  # large upload: ingested by a worker
                job = client.wait(corpus["job"]["id"], out=sys.stderr)
                if job["state"] != "succeeded":
                    print(f"ingestion {job['state']}: {job['error_message']}", file=sys.stderr)
                    return 1
            corpus_id = corpus["corpus_id"]
            print(f"corpus {corpus_id}", file=sys.stderr)
            accepted = client.fit(corpus_id, _number_or_auto(args.topics, int),
                                  alpha0=_number_or_auto(args.alpha0, float), seed=args.seed)
            model_id = accepted["model_id"]
            print(f"model {model_id} (job {accepted['job']['id']})", file=sys.stderr)
            if not args.wait:
                print(model_id)
                return 0
            job = client.wait(accepted["job"]["id"], out=sys.stderr)
            if job["state"] != "succeeded":
                print(f"fit {job['state']}: {job['error_message']}", file=sys.stderr)
                return 1
            print(topics_table(client.topics(model_id, args.top_n)["topics"], args.top_n))
        elif args.command == "topics":
            print(topics_table(client.topics(args.model, args.top_n)["topics"], args.top_n))
        elif args.command == "infer":
            texts = read_texts(args.file)
            inferred = client.infer(args.model, texts)
            if args.json:
                print_json(inferred)
            else:
                print(mixtures_table(inferred["doc_topic"], inferred["n_known_tokens"], texts))
        elif args.command == "export":
            suffix = {"zip": "zip", "npz": "npz", "pyldavis": "json"}[args.format]
            output = args.output or Path(f"model-{args.model}.{suffix}")
            client.export(args.model, output, fmt=args.format, top_n=args.top_n)
            print(output)
        elif args.command == "job":
            print_json(client.job(args.job))
    except (ClientError, httpx.HTTPError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "api":
        settings = _settings(args)
        if not _check_bind(settings, args.host):
            return 2
        _run_api(settings, args.host, args.port)
        return 0
    if args.command == "keys":
        return _keys(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "migrate":
        _migrate(_settings(args))
        return 0
    return _client_command(args)


if __name__ == "__main__":
    sys.exit(main())
