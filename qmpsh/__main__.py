import sys

from qmpsh.cli import main

sys.exit(main())
