import sys

from live.cli.main import main

sys.exit(main())
