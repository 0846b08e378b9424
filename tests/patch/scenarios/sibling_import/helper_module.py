NAME = "helper_module"
