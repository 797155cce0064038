"""Model families, one file each; `cnnlab.registry` lists them."""
