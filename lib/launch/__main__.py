from lib.launch.estimate import main

main()
