"""Build the sample chat in data/sample/: its REALTALK JSON and the raw xlsx export it comes from.

The chat is invented for the project (two fictional people, three sessions). Run from the repo root:
    python data/make_sample.py
"""

from __future__ import annotations

from pathlib import Path

from realtalk_cli.data.formats import write_realtalk
from realtalk_cli.data.model import Chat, Event, Message, QAItem, Session
from realtalk_cli.data.rawsheet import write_raw_sheet

HERE = Path(__file__).parent / "sample"
NAME = "Chat_S_Ana_Ben"

# (session date, [events of Ana], [events of Ben], [(speaker, "HH:MM:SS", text, picture or None)])
SESSIONS = [
    (
        "03.03.2024",
        ["Ana starts a pottery class on Saturdays.", "Ana adopts a rescue dog called Miso."],
        ["Ben runs his first 10k race in Lisbon."],
        [
            ("Ana", "18:02:11", "Hi Ben! How was your weekend?", None),
            ("Ben", "18:05:40", "Hey Ana! Exhausting but great, I ran my first 10k in Lisbon 🏃", None),
            ("Ben", "18:05:58", "Finished in 54 minutes, slower than I hoped.", None),
            ("Ana", "18:06:30", "That's amazing for a first race! Were your legs okay after?", None),
            ("Ben", "18:07:12", "Sore today, but happy. What about you?", None),
            ("Ana", "18:08:03", "I started a pottery class, every Saturday morning.", None),
            ("Ana", "18:08:20", "This is my first bowl, a bit wonky 😅", "00000004-PHOTO-2024-03-03-18-08-25"),
            ("Ben", "18:09:45", "Wonky is charming. Do you keep everything you make?", None),
            ("Ana", "18:10:31", "Only the good ones. And guess what, I adopted a dog! His name is Miso.", None),
            ("Ben", "18:11:02", "No way! What kind of dog?", None),
            ("Ana", "18:11:40", "A shelter mix, maybe part beagle. Very curious nose.", None),
        ],
    ),
    (
        "07.03.2024",
        ["Ana takes Miso to the vet for his vaccinations."],
        ["Ben signs up for a half marathon in Porto in May.", "Ben's sister Marta visits him."],
        [
            ("Ben", "20:15:03", "How is Miso settling in?", None),
            ("Ana", "20:20:47", "Good! Took him to the vet today for his vaccinations, he was so brave.", None),
            ("Ben", "20:21:30", "Good boy. I have news too: I signed up for the Porto half marathon in May.", None),
            ("Ana", "20:22:10", "Wow, double the distance! Are you following a plan?", None),
            ("Ben", "20:23:55", "Yes, this one: https://example.org/half-marathon-plan", None),
            (
                "Ben",
                "20:24:20",
                "Four runs a week. My sister Marta is visiting this weekend so I'll start Monday.",
                None,
            ),
            ("Ana", "20:25:02", "Say hi to Marta! Is she a runner too?", None),
            ("Ben", "20:26:40", "Not at all, she prefers museums 😄", None),
        ],
    ),
    (
        "16.03.2024",
        ["Ana's pottery class holds a small exhibition."],
        ["Ben runs 18 km, his longest training run."],
        [
            ("Ana", "11:30:00", "Our pottery class had a little exhibition today!", None),
            ("Ana", "11:30:19", "Here is my vase, I painted it blue", "00000031-PHOTO-2024-03-16-11-30-21"),
            ("Ben", "11:45:12", "It looks professional. Did you sell anything?", None),
            ("Ana", "11:46:05", "Two cups! I was so surprised.", None),
            ("Ben", "11:47:30", "Congrats! I ran 18 km this morning, longest run so far.", None),
            ("Ana", "11:48:02", "You'll be ready for Porto. Miso says good luck 🐶", None),
            ("Ben", "11:48:44", "Thanks to both of you!", None),
        ],
    ),
]

QA = [
    ("What hobbies did Ana take up in March 2024?", "pottery, dog walking with Miso", ["D1:6", "D1:9", "D3:1"], 1),
    ("Which races has Ben run or signed up for?", "a 10k in Lisbon, the Porto half marathon", ["D1:2", "D2:3"], 1),
    ("When did Ana take Miso to the vet?", "07 March, 2024", ["D2:2"], 2),
    ("How long was Ben's longest training run before the Porto half marathon?", "18 km", ["D3:5"], 2),
    ("Would Ben's sister Marta enjoy joining him on a training run?", "Probably not; she prefers museums", ["D2:8"], 3),
    ("What breed might Ana's dog be?", "Part beagle", ["D1:11"], 3),
]


def build_chat() -> Chat:
    sessions = []
    for number, (date, ana_events, ben_events, rows) in enumerate(SESSIONS, start=1):
        messages = []
        for i, (speaker, time, text, picture) in enumerate(rows, start=1):
            messages.append(
                Message(
                    dia_id=f"D{number}:{i}",
                    speaker=speaker,
                    clean_text=text,
                    date_time=f"{date}, {time}",
                    img_file=[f"{picture}_opt.jpg", f"{picture}.jpg"] if picture else [],
                    img_url=[w for w in text.split() if w.startswith("https://")],
                    session=number,
                )
            )
        events = {
            "agent_a": [Event(sub_event=e, id="E") for e in ana_events],
            "agent_b": [Event(sub_event=e, id="E") for e in ben_events],
        }
        sessions.append(Session(number, messages[0].date_time, messages, events))
    qa = [QAItem(q, a, ev, cat) for q, a, ev, cat in QA]
    return Chat(NAME, "realtalk", "Ana", "Ben", sessions, qa)


def main() -> None:
    chat = build_chat()
    write_realtalk(chat, HERE / f"{NAME}.json")
    write_raw_sheet(chat, HERE / "raw" / f"{NAME}.xlsx")
    print(f"wrote {HERE / (NAME + '.json')} and {HERE / 'raw' / (NAME + '.xlsx')}")


if __name__ == "__main__":
    main()
