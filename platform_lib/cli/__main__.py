from platform_lib.cli import main

raise SystemExit(main())
