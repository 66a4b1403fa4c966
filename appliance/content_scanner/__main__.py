# SPDX-License-Identifier: AGPL-3.0-or-later
"""`python -m appliance.content_scanner --config FILE`: run the content scanner."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web

from appliance.content_scanner.app import create_app
from appliance.content_scanner.config import ConfigError, ScannerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.content_scanner")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = ScannerConfig.load(args.config)
    except ConfigError as error:
        print(f"content scanner: {error}", file=sys.stderr)
        return 2
    web.run_app(
        create_app(config),
        host=config.listen_host,
        port=config.listen_port,
        access_log_format='%a "%r" %s %b %Tf',
        print=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
