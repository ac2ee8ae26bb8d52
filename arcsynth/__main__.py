from arcsynth.cli import main

# Guarded: a process started with multiprocessing's spawn imports this module again.
if __name__ == "__main__":
    main()
