"""``python -m curses_client``: see ``curses_client.app.main``."""

import sys

from curses_client.app import main

sys.exit(main())
