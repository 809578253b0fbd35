"""Ptychography studies: a physics-informed network (PINN), a supervised baseline and ePIE on simulated
diffraction data. `pipeline` is the shared simulate and fit; each other module is one study; specs/ holds
their YAML."""
