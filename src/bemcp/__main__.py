import sys

from bemcp.cli import main

sys.exit(main())
