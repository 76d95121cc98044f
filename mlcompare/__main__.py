import sys

from mlcompare.cli import main

sys.exit(main())
