from tongues.cli import main

raise SystemExit(main())
