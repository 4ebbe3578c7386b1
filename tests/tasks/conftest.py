import pytest


@pytest.fixture(scope="session")
def manifest(tmp_path_factory):
    """40 real digits-motion clips of 8 frames at 32² (shared by the recipe tests of this folder)."""
    from vidfm.data.digits import make_digits_motion

    return make_digits_motion(tmp_path_factory.mktemp("dm"), n=40, num_frames=8, size=32, seed=3)
