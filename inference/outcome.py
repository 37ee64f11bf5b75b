"""What one analysis found, independent of the model that found it: the shape every profile's
`interpret` returns, the SR and SC are drawn from, and the results API shows as JSON."""

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Mark:
    """A region marked on one source image (one frame of it)."""

    sop_instance_uid: str
    box: tuple[int, int, int, int]  # first row, first column, last row + 1, last column + 1
    label: str  # short, Russian, shown on the image and in the legend, e.g. "Очаг 1"
    frame: int = 1


@dataclass(frozen=True)
class Measurement:
    concept: str  # English name of what is measured, e.g. "Lesion volume, right lung"
    concept_ru: str  # the same in Russian, for the report text
    value: float
    unit: str  # UCUM: "ml", "%", "{probability}", "1"


@dataclass(frozen=True)
class Outcome:
    probability: float  # of pathology, 0..1
    pathology: bool  # probability at or above the service's pathology threshold
    category: str = ""  # "CT-2", "BI-RADS 4", density "B"...; empty when the service has none
    urgent: bool = False  # a finding to be read first (e.g. CT-4)
    measurements: list[Measurement] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    conclusion_ru: str = ""  # the draft description of the study, in Russian
    key_images: list[str] = field(default_factory=list)  # SOP Instance UIDs the SC series shows

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Outcome":
        return cls(
            **{
                **data,
                "measurements": [Measurement(**m) for m in data.get("measurements", [])],
                "marks": [Mark(**{**m, "box": tuple(m["box"])}) for m in data.get("marks", [])],
            }
        )
