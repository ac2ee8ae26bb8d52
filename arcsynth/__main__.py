from arcsynth.cli import main

main()
