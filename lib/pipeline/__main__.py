from lib.pipeline.runner import main

main()
