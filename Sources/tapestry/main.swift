print("tapestry: under construction")
