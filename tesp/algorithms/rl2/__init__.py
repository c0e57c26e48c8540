"""RL² (Duan et al. 2016; Wang et al. 2016): a recurrent policy meta-trained over trials of
several episodes of one task. In progress: the trial env (trial_env.py); the method is not yet
registered."""
