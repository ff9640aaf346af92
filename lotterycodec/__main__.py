import sys

from .decoder.cli import main

sys.exit(main())
