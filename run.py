#!/usr/bin/env python3
"""quaero's entry point in a checkout: serve | web | worker | migrate | submit | jobs.

python run.py serve [--config config.toml]     web + workers in one process
python run.py web                               the web server alone
python run.py worker                            a worker process alone (scale-out)
python run.py migrate                           apply pending migrations
python run.py submit crawler --payload '{"url": "https://example.org/"}' --follow
python run.py jobs [--status running]           the roots table in the terminal
python run.py demo --config examples/demo.toml  serve and crawl the bundled demo site
python run.py export ID [--format csv]          every descendant of a job, to a file

The commands live in quaero/cli.py; `pip install .` installs them as `quaero`.
"""

import sys

from quaero.cli import main

if __name__ == "__main__":
    sys.exit(main())
