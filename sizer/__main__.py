from sizer.cli import main

raise SystemExit(main())
