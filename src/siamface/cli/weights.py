"""``siamface weights list|path|fetch``: where backbone weights live, and the one explicit
download. Nothing else in siamface touches the network."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, locate or explicitly download backbone weights")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every weights set, its source and whether it is present")
    path = actions.add_parser("path", help="where a weights set is expected")
    path.add_argument("name", help="weights or backbone name, e.g. facenet-vggface2")
    fetch = actions.add_parser("fetch", help="download published weights (sha256-checked)")
    fetch.add_argument("name", help="weights or backbone name, e.g. facenet-vggface2")
    fetch.add_argument("--force", action="store_true", help="download even if cached")
    p.set_defaults(run=run)


def _status(config) -> tuple[str, str]:
    from siamface.backbones import expected_weights_path
    from siamface.errors import WeightsNotFoundError

    try:
        path = expected_weights_path(config)
    except WeightsNotFoundError:
        return "missing", f"package {config.package} not installed"
    return ("present" if path.is_file() else "missing"), str(path)


def run(args: argparse.Namespace) -> int:
    from siamface.backbones import fetch_weights, get_pretrained_config, list_weights

    table = list_weights()
    if args.action == "list":
        for weights_name, backbone in sorted(table.items()):
            config = get_pretrained_config(backbone)
            state, where = _status(config)
            source = f"package {config.package}" if config.package else "explicit fetch"
            print(f"{weights_name:24s} backbone {backbone:22s} {state:8s} {source:34s} {where}")
        return 0
    backbone = table.get(args.name, args.name)
    if backbone not in table.values():
        from siamface.errors import UnknownNameError

        raise UnknownNameError("weights or backbone name", args.name,
                               sorted(set(table) | set(table.values())))
    config = get_pretrained_config(backbone)
    if args.action == "path":
        state, where = _status(config)
        print(f"{where}  ({state}; sha256 {config.sha256 or 'not recorded'})")
        return 0
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, desc=config.weights_name)

    def progress(done: int, total: int | None) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        path = fetch_weights(args.name, force=args.force, progress=progress)
    finally:
        bar.close()
    print(f"{config.weights_name}: {path}")
    return 0
