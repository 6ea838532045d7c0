import sys

from dali_mix.cli import main

sys.exit(main())
