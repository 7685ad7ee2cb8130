from scar_core.cli import main

raise SystemExit(main())
