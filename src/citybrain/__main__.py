from citybrain.cli import main

raise SystemExit(main())
