"""Parameter-recovery studies: does a fit recover the parameters that made the data, and is the spread data
variance or fitting variance? specs/ holds their YAML."""
