"""A step that runs in the image built from this folder's Dockerfile."""

from __future__ import annotations

from zenml import pipeline, step


@step(image="zenml-example/sklearn:1")
def fit_tree(depth: int = 3) -> float:
    import palmerpenguins
    from sklearn.tree import DecisionTreeClassifier

    data = palmerpenguins.load_penguins().dropna()
    features = data[["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]]
    model = DecisionTreeClassifier(max_depth=depth, random_state=0)
    return float(model.fit(features, data["species"]).score(features, data["species"]))


@pipeline
def custom_image(depth: int = 3) -> None:
    fit_tree(depth=depth)
