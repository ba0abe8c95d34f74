from nerfsculpt.cli import main

raise SystemExit(main())
