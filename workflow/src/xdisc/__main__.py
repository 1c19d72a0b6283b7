import sys

from xdisc.cli import main

sys.exit(main())
