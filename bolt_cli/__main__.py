import sys

from bolt_cli.main import main

sys.exit(main())
