from vidfm.cli import build_parser


def test_probe_parses_every_mode():
    args = build_parser().parse_args(
        ["probe", "--checkpoint", "RUN", "--data", "m.csv", "--label", "a", "--label", "b", "--baseline"]
    )
    assert args.baseline and not args.random_init and args.label == ["a", "b"]
    assert (
        build_parser().parse_args(["probe", "--checkpoint", "R", "--data", "m", "--label", "x"]).baseline
        is False
    )
