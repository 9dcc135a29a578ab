import sys

from vmtest.cli.main import main

sys.exit(main())
