"""``stt-corpus flows``: serve the Prefect deployments (registered through an entry point)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Serve the Prefect deployments of stt-corpus against the Prefect API in PREFECT_API_URL (start
one with `infra/local.sh start`; without it Prefect starts a temporary local server):

  build-corpus/nightly       cron schedule; builds nightly-<time> only when there is new audio
  build-corpus/on-new-audio  polls the sources every --poll-minutes; builds when new audio landed
  build-corpus/manual        maintainers: prefect deployment run 'build-corpus/manual' -p release=v2
  refilter/manual            prefect deployment run 'refilter/manual' -p source_release=v1 \\
                               -p release=v1-strict -p store=s3://b/p -p 'thresholds={"min_avg_logprob": -0.5}'
  train/manual               prefect deployment run 'train/manual' -p store=s3://b/p -p release=v1 \
                               -p run=r1 -p max_steps=2000

Runs until interrupted; each flow run executes in a subprocess of this one.
"""


def _serve(args) -> int:
    from flows.deployments import serve_deployments

    serve_deployments(args.config, cron=args.cron, poll_minutes=args.poll_minutes, ray=args.ray,
                      ray_address=args.ray_address)
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("flows", help="Prefect deployments: serve them",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="flows_command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="serve the deployments until interrupted", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--config", metavar="FILE_OR_URI", help="build.yaml the build deployments use by default")
    serve.add_argument("--cron", default="0 2 * * *", help="schedule of the nightly build (default 02:00 UTC)")
    serve.add_argument("--poll-minutes", type=float, default=15.0, help="how often to look for new audio")
    serve.add_argument("--ray", choices=["local", "submit"], default="local",
                       help="local: a Ray cluster per run; submit: the Ray Jobs API of --ray-address")
    serve.add_argument("--ray-address", metavar="URL", help="Ray dashboard URL for submit, e.g. http://127.0.0.1:8265")
    serve.set_defaults(func=_serve)
    return parser
