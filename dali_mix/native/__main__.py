import sys

from dali_mix.native import main

sys.exit(main())
