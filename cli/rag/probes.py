"""The calibration bank: questions about everyday subjects that no particular index is about.

:mod:`rag.calibrate` asks each of them against an index to learn how high an
unrelated question's best match reaches in *that* index. A few of them will
happen to touch any given corpus (a medical one on a biomedical corpus, a
computing one on software docs): the calibration takes a quantile, not the
maximum, so a handful of on-topic probes do not move it.

Changing this list changes every calibration: :func:`bank_version` is part of
the record, and an index calibrated with another bank is recalibrated by the
next ``rag index``. The off-topic questions the benchmark evaluates on
(``bench/abstain/offtopic.txt``) are a separate list, never these.
"""

from __future__ import annotations

import hashlib

PROBES: tuple[str, ...] = (
    # geography and travel
    "Which river flows through Budapest?",
    "How tall is Mount Kilimanjaro?",
    "What language do people speak in Brazil?",
    "Which countries share a border with Switzerland?",
    "What is the largest desert in Asia?",
    "Do I need a visa to visit Japan for two weeks?",
    "What is the best time of year to visit Iceland?",
    "How long is the train ride from Paris to Barcelona?",
    "Which island is the biggest in the Mediterranean Sea?",
    "What currency is used in Thailand?",
    "How many time zones does Russia have?",
    "Where is the deepest lake in the world?",
    # cooking and food
    "How long should I boil an egg for a runny yolk?",
    "What can I use instead of buttermilk in pancakes?",
    "How do you make a classic French omelette?",
    "Why does my risotto turn out gluey?",
    "What temperature should a roast chicken reach inside?",
    "How do I keep fresh basil from wilting?",
    "What is the difference between baking soda and baking powder?",
    "How much rice should I cook per person?",
    "How do I make pickled cucumbers at home?",
    "Which wine goes well with grilled salmon?",
    "How long can cooked pasta stay in the fridge?",
    "What spices go into a garam masala blend?",
    # sport and games
    "How many players are on a rugby union team?",
    "Who holds the record for the most Olympic gold medals?",
    "What is the offside rule in ice hockey?",
    "How long is a marathon in kilometres?",
    "When was the first Tour de France held?",
    "How do you score a try in rugby?",
    "What does a birdie mean in golf?",
    "How many sets are played in a men's Grand Slam tennis final?",
    "Which team has won the most NBA championships?",
    "How does castling work in chess?",
    "What are the rules of the card game bridge?",
    "How heavy is a bowling ball used in tenpin bowling?",
    # history
    "Why did the Roman Empire fall?",
    "When did the Berlin Wall come down?",
    "Who was the first emperor of China?",
    "What started the First World War?",
    "When did the Ottoman Empire end?",
    "Who built Machu Picchu?",
    "What was the Magna Carta?",
    "How long did the Hundred Years' War last?",
    "Who was Cleopatra's first husband?",
    "When did women get the right to vote in New Zealand?",
    "What happened during the French Revolution's Reign of Terror?",
    "Who discovered the sea route from Europe to India?",
    # health and medicine (some corpora are about this: the quantile absorbs them)
    "How much water should an adult drink each day?",
    "What are the symptoms of a migraine?",
    "How long does a common cold usually last?",
    "Is it safe to take ibuprofen with coffee?",
    "How many hours of sleep does a teenager need?",
    "What helps with a sprained ankle?",
    # money and finance
    "How do I open a savings account?",
    "What is a good credit score?",
    "Should I pay off my mortgage early or invest?",
    "How are capital gains taxed when I sell shares?",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "How do I make a household budget?",
    "What does inflation do to my savings?",
    "How do I ask my boss for a raise?",
    "What happens to my pension if I change jobs?",
    "How much should I tip in a restaurant in the United States?",
    # home, garden and family
    "How often should I water tomato plants?",
    "When should I prune rose bushes?",
    "How do I get rid of aphids on my plants?",
    "How do I unclog a kitchen sink without chemicals?",
    "What is the best way to remove red wine from a carpet?",
    "How do I paint a room without leaving streaks?",
    "How can I stop my dog from barking at the mailman?",
    "How often should I feed a goldfish?",
    "At what age do babies start to walk?",
    "How do I help my child with a fear of the dark?",
    "What should I pack for a week-long camping trip?",
    "How do I fix a dripping tap?",
    # nature, animals, earth and space
    "Why do cats purr?",
    "How long do elephants live?",
    "Why do birds migrate south in winter?",
    "How do bees make honey?",
    "What is the fastest animal on land?",
    "Why is the sky blue?",
    "How far away is the Moon?",
    "What causes the northern lights?",
    "How many moons does Jupiter have?",
    "What causes earthquakes?",
    "How are hurricanes named?",
    "Why do leaves change colour in autumn?",
    # arts, music, film and books
    "Who painted The Starry Night?",
    "What key is Beethoven's Fifth Symphony in?",
    "How many strings does a cello have?",
    "Who wrote Pride and Prejudice?",
    "Which film won the Academy Award for best picture in 1998?",
    "What is the plot of Moby-Dick?",
    "Who sang lead vocals for Queen?",
    "What is the difference between a sonnet and a haiku?",
    "How do I learn to play the guitar by ear?",
    "When was the Sistine Chapel ceiling painted?",
    "Who directed the film Jaws?",
    "What instruments are in a string quartet?",
    # people, culture and language
    "How do you say thank you in Korean?",
    "What is the origin of Halloween?",
    "Why do people celebrate the Lunar New Year?",
    "How do you write a wedding speech?",
    "What is the plural of cactus?",
    "Which language has the most native speakers?",
    "Who is the current Secretary-General of the United Nations?",
    "What does the idiom break a leg mean?",
    "How many letters are in the Greek alphabet?",
    "What are the main beliefs of Buddhism?",
    "Who was Zeus in Greek mythology?",
    "How do I write a formal letter of complaint?",
    # cars, transport and everyday tech
    "How often should I change the oil in my car?",
    "What does the check engine light mean?",
    "How do I change a flat tyre?",
    "Is an electric car cheaper to run than a petrol car?",
    "How do I renew my driving licence?",
    "How do I connect my phone to a car's Bluetooth?",
    "Why is my phone battery draining so fast?",
    "How do I reset my Wi-Fi router?",
    "What is the best laptop for a student?",
    "How do I back up photos from my phone?",
    # science and numbers
    "What is the speed of light?",
    "Who came up with the theory of relativity?",
    "What is the boiling point of water on Mount Everest?",
    "How do you calculate the area of a circle?",
    "What is a prime number?",
    "Why does ice float on water?",
    "How many bones are in the human body?",
    "What is the chemical symbol for gold?",
    "How do vaccines train the immune system?",
    "What is photosynthesis?",
    # work, law and government
    "How do I write a cover letter for a job application?",
    "What should I say in a job interview about my weaknesses?",
    "How many days of paid holiday am I entitled to?",
    "How do I become a citizen of Canada?",
    "What does a notary public do?",
    "How does the electoral college work?",
    "Can my landlord raise the rent in the middle of a lease?",
    "How do I dispute a parking ticket?",
    "What is the difference between a misdemeanour and a felony?",
    "How long does it take to get a passport?",
    # computing (on-topic for software docs: the quantile absorbs them)
    "How do I speed up a slow computer?",
    "What is the difference between RAM and storage?",
    "How do I recover a deleted file?",
    "How do I make a strong password?",
    # miscellaneous
    "How do I tie a bow tie?",
    "What is the meaning of life?",
    "How do I get better at public speaking?",
    "What is a good name for a golden retriever puppy?",
    "How do you fold a paper crane?",
    "What are some fun things to do on a rainy day?",
    "How do I start running if I am out of shape?",
    "What should I get my mother for her birthday?",
    "How do I remove a stripped screw?",
    "Why do we dream?",
    "How do I iron a shirt?",
    "What is the weather usually like in Lisbon in March?",
)


def bank_version() -> str:
    """Changes with any edit to the bank; part of every calibration record."""
    return hashlib.sha256("\n".join(PROBES).encode("utf-8")).hexdigest()[:12]
