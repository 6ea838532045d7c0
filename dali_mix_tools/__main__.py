import sys

from dali_mix_tools.cli import main

sys.exit(main())
