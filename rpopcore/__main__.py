import sys

from rpopcore.cli import main

sys.exit(main())
