import sys

from keymoment.cli import main

sys.exit(main())
