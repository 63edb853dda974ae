def load_checkpoint(model, path_or_state_dict, strict=True):
    raise NotImplementedError
